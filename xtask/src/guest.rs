//! `cargo xtask guest`: builds the guest agent as a static executable and packs it as the
//! initramfs whose `/init` it is.
//!
//! The agent is built for the explicit target `x86_64-unknown-linux-gnu` with glibc's
//! `crt-static` (the musl target is not installed here): with `--target`, `RUSTFLAGS` apply to
//! the agent only, not to build scripts and proc macros, which must stay dynamic. It gets its
//! own target directory (`<target>/guest-static`) because the size-optimised release profile
//! it is built with (opt-level "s", LTO, one codegen unit, stripped) would otherwise rebuild
//! the host's release artefacts back and forth.
//!
//! Outputs go to `cache_dir()/guest/<hash of the binary>/`: `boxlite-guest` and
//! `initramfs.cpio.gz` (gzip newc: `/init`, `/dev/console`, `/dev/null` and the empty
//! `/dev`, `/proc`, `/sys`, `/run`, `/tmp` the agent mounts on). Same binary, same initramfs.
//!
//! The same cargo invocation builds `netprobe` (crate `netprobe`), the network tests' probe,
//! static too because it runs inside `FROM scratch` boxes; it is cached the same way, under
//! `cache_dir()/netprobe/<hash>/netprobe`, and `cargo xtask test` hands its path to the tests
//! as `BOXLITE_NETPROBE`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args as ClapArgs;
use sha2::{Digest, Sha256};

use crate::{cpio, image, link, sh};

/// The Rust target the agent is built for.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The agent's package and binary names.
const PACKAGE: &str = "guest";
const BINARY: &str = "boxlite-guest";
/// The network probe's package and binary name.
const NETPROBE: &str = "netprobe";
/// The initramfs's file name, in the cache and where it is linked: the name the runtime
/// looks for in a guest directory.
pub const INITRAMFS: &str = "initramfs.cpio.gz";
/// Hex digits of the cache key.
const KEY_LEN: usize = 16;

/// Arguments of `cargo xtask guest`.
#[derive(ClapArgs, Default)]
pub struct Args {
    /// Print only the initramfs path (building first if needed).
    #[arg(long)]
    pub print_path: bool,
    /// Print only the static `netprobe` path (building first if needed), e.g. for
    /// `BOXLITE_NETPROBE=$(cargo xtask guest --print-netprobe)`.
    #[arg(long, conflicts_with = "print_path")]
    pub print_netprobe: bool,
}

/// The built agent and its initramfs.
pub struct Built {
    /// The static `boxlite-guest` executable.
    pub binary: PathBuf,
    /// The gzip newc initramfs whose `/init` is the agent.
    pub initramfs: PathBuf,
    /// The static `netprobe` executable the network tests copy into boxes.
    pub netprobe: PathBuf,
}

/// Builds the agent and initramfs, links the initramfs into the per-user guest directory
/// (where `boxlite` finds it with no `--initramfs`), and prints where they are.
pub fn run(args: Args) -> Result<()> {
    let built = build()?;
    link::for_user(&[(INITRAMFS, &built.initramfs)])?;
    if args.print_path {
        println!("{}", built.initramfs.display());
    } else if args.print_netprobe {
        println!("{}", built.netprobe.display());
    } else {
        println!("{}", built.binary.display());
        println!("{}", built.initramfs.display());
        println!("{}", built.netprobe.display());
    }
    Ok(())
}

/// Builds the static agent (cargo decides whether anything changed) and packs the initramfs
/// unless one for the same binary is cached.
pub fn build() -> Result<Built> {
    if std::env::consts::ARCH != "x86_64" {
        bail!("the guest agent build only supports x86_64 hosts (no cross-compiling yet)");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| sh::workspace_root().join("target"), PathBuf::from)
        .join("guest-static");
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    rustflags.push_str(" -C target-feature=+crt-static");
    sh::run(
        sh::cargo()
            .args(["build", "--release", "-p", PACKAGE, "--bin", BINARY])
            .args(["-p", NETPROBE, "--bin", NETPROBE])
            .args(["--target", TARGET])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("RUSTFLAGS", rustflags.trim())
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
            .env("CARGO_PROFILE_RELEASE_LTO", "true")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "true"),
    )?;
    let built = target_dir.join(TARGET).join("release").join(BINARY);
    let binary = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    check_static(&binary).with_context(|| format!("{} is not static", built.display()))?;

    let key = hex::encode(Sha256::digest(&binary))[..KEY_LEN].to_owned();
    let out = image::cache_dir().join("guest").join(&key);
    let initramfs = out.join(INITRAMFS);
    let cached = out.join(BINARY);
    if !initramfs.exists() || !cached.exists() {
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        publish(&cached, |f| {
            f.write_all(&binary)?;
            set_mode(f, 0o755)
        })?;
        publish(&initramfs, |f| pack(f, &binary))?;
    }
    if let Ok(description) = sh::output(std::process::Command::new("file").arg("-b").arg(&cached)) {
        eprintln!("{BINARY}: {}", description.trim());
    }
    eprintln!(
        "{BINARY}: {} bytes, initramfs {} bytes",
        binary.len(),
        fs::metadata(&initramfs).map(|m| m.len()).unwrap_or(0)
    );
    let netprobe = cache_netprobe(&target_dir.join(TARGET).join("release").join(NETPROBE))?;
    Ok(Built {
        binary: cached,
        initramfs,
        netprobe,
    })
}

/// Checks the built `netprobe` is static and copies it to the cache, keyed by its hash, so
/// a path handed out stays valid while cargo rebuilds the target directory.
fn cache_netprobe(built: &Path) -> Result<PathBuf> {
    let binary = fs::read(built).with_context(|| format!("reading {}", built.display()))?;
    check_static(&binary).with_context(|| format!("{} is not static", built.display()))?;
    let key = hex::encode(Sha256::digest(&binary))[..KEY_LEN].to_owned();
    let out = image::cache_dir().join(NETPROBE).join(key);
    let cached = out.join(NETPROBE);
    if !cached.exists() {
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        publish(&cached, |f| {
            f.write_all(&binary)?;
            set_mode(f, 0o755)
        })?;
    }
    Ok(cached)
}

/// Writes the initramfs for `agent` to `out`.
fn pack(out: &mut fs::File, agent: &[u8]) -> Result<()> {
    let mut archive = cpio::gzip(out);
    for dir in ["dev", "proc", "sys", "run", "tmp"] {
        archive.dir(dir, 0o755)?;
    }
    // The kernel opens /dev/console for init's stdio before anything is mounted, and the
    // agent reports fatal errors there.
    archive.char_dev("dev/console", 0o600, 5, 1)?;
    archive.char_dev("dev/null", 0o666, 1, 3)?;
    archive.file("init", 0o755, agent)?;
    archive.finish()?.finish()?;
    Ok(())
}

/// Writes `path` through a temporary file renamed into place, so a cached output is complete.
fn publish(path: &Path, write: impl FnOnce(&mut fs::File) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    write(&mut file).with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("publishing {}", path.display()))
}

fn set_mode(file: &fs::File, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Fails unless `elf` is a 64-bit ELF executable without a program interpreter (`PT_INTERP`),
/// i.e. one the kernel can run as `/init` with no dynamic loader or libraries present.
pub fn check_static(elf: &[u8]) -> Result<()> {
    ensure!(
        elf.len() >= 64 && elf[..4] == *b"\x7fELF" && elf[4] == 2,
        "not a 64-bit ELF file"
    );
    let u16_at = |at: usize| -> Result<u16> {
        let b = elf.get(at..at + 2).context("truncated ELF header")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| -> Result<u32> {
        let b = elf.get(at..at + 4).context("truncated ELF header")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let phoff = usize::try_from(u64::from(u32_at(0x20)?) | (u64::from(u32_at(0x24)?) << 32))?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    ensure!(
        phnum == 0 || phentsize >= 4,
        "bad program header size {phentsize}"
    );
    for i in 0..phnum {
        const PT_INTERP: u32 = 3;
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            bail!("it has a program interpreter (PT_INTERP): it is dynamically linked");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_check_tells_dynamic_from_static() {
        // The test binary itself is dynamically linked.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let err = check_static(&me).unwrap_err();
        assert!(err.to_string().contains("PT_INTERP"), "{err}");
        assert!(check_static(b"#!/bin/sh\n").is_err());
        // A minimal ELF64 header with no program headers has no interpreter.
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        check_static(&elf).unwrap();
    }
}
