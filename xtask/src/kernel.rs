//! `cargo xtask kernel`: builds the guest kernel (bzImage and PVH vmlinux) from a config
//! fragment, cached outside the checkout by a key of its inputs.
//!
//! Layout under `cache_dir()/kernel/`: `build-<source key>/` holds the unpacked tree (built in place,
//! kept for incremental rebuilds: objtool records absolute paths, so a moved tree rebuilds from
//! scratch) and `build.log`; `<key>/` holds the published `bzImage`, `vmlinux` and `config`.
//! The build directory is keyed by the source only, so editing the fragment rebuilds
//! incrementally; the output directory is keyed by source, fragment and recipe.

mod config;
mod progress;

#[cfg(test)]
mod boot_tests;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use oci_layers::lock::FileLock;
use sha2::{Digest, Sha256};

use crate::{deps, image, link, sh};

/// The config fragment, relative to the workspace root.
pub const FRAGMENT: &str = "guest/kernel/microvm-x86_64.config";
/// The default source: Debian's kernel source tarball.
const DEFAULT_SOURCE: &str = "/usr/src/linux-source-6.1.tar.xz";
/// The Debian package that ships [`DEFAULT_SOURCE`].
const DEFAULT_SOURCE_PACKAGE: &str = "linux-source-6.1";
/// Bump whenever the build steps or outputs change, so cached outputs are not reused.
const BUILD_RECIPE_VERSION: u32 = 1;
/// Hex digits of a cache key: 64 bits is plenty for a handful of builds per machine.
const KEY_LEN: usize = 16;
/// The published files, as (name in the output dir, path in the build tree).
const OUTPUTS: [(&str, &str); 3] = [
    ("bzImage", "arch/x86/boot/bzImage"),
    ("vmlinux", "vmlinux"),
    ("config", ".config"),
];
/// The bootable outputs, by the names the runtime looks for in a guest directory (it takes
/// the PVH `vmlinux` before the `bzImage`).
const KERNELS: [&str; 2] = ["bzImage", "vmlinux"];
/// Where the candidate configuration is resolved before it replaces `.config`.
const CANDIDATE: &str = ".config.boxlite";

/// Arguments of `cargo xtask kernel`.
#[derive(ClapArgs, Default)]
pub struct Args {
    /// Kernel source: a .tar.xz/.tar.gz/.tar tarball or an unpacked tree
    /// [default: /usr/src/linux-source-6.1.tar.xz, installed from Debian if missing].
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Kconfig fragment applied on top of allnoconfig [default: guest/kernel/microvm-x86_64.config].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Parallel make jobs [default: the number of CPUs].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print only the output directory (building first if needed).
    #[arg(long)]
    pub print_path: bool,
}

/// Builds the kernel if needed, links `vmlinux` and `bzImage` into the per-user guest
/// directory (where `boxlite` finds them with no `--kernel`), and prints where they are.
pub fn run(args: Args) -> Result<()> {
    let dir = build(&args)?;
    link::for_user(&KERNELS.map(|name| (name, dir.join(name))))?;
    if args.print_path {
        println!("{}", dir.display());
    } else {
        for name in KERNELS {
            println!("{}", dir.join(name).display());
        }
    }
    Ok(())
}

/// Builds the kernel `args` describe, or finds it cached; returns the output directory.
pub fn build(args: &Args) -> Result<PathBuf> {
    if std::env::consts::ARCH != "x86_64" {
        bail!("the guest kernel build only supports x86_64 hosts (no cross-compiling yet)");
    }
    let fragment_path = args
        .config
        .clone()
        .unwrap_or_else(|| sh::workspace_root().join(FRAGMENT));
    let fragment_path = fragment_path
        .canonicalize()
        .with_context(|| format!("config fragment {}", fragment_path.display()))?;
    let fragment =
        fs::read(&fragment_path).with_context(|| format!("reading {}", fragment_path.display()))?;
    let wanted = config::parse(
        std::str::from_utf8(&fragment)
            .with_context(|| format!("{} is not UTF-8", fragment_path.display()))?,
        &fragment_path.display().to_string(),
    )?;
    let source = Source::resolve(args.source.as_deref())?;

    let root = image::cache_dir().join("kernel");
    let identity = source.identity()?;
    let key = short_hash(&[
        identity.as_bytes(),
        BUILD_RECIPE_VERSION.to_string().as_bytes(),
        &fragment,
    ]);
    let out = root.join(&key);
    // An unpacked tree may have been edited since, so it always goes through (incremental) make.
    if source.is_tarball() && complete(&out) {
        return Ok(out);
    }

    ensure_build_tools()?;
    let work = root.join(format!("build-{}", short_hash(&[identity.as_bytes()])));
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let lock_path = work.join("lock");
    let _lock = match FileLock::try_exclusive(&lock_path)? {
        Some(lock) => lock,
        None => {
            eprintln!("waiting for another kernel build ({})", lock_path.display());
            FileLock::exclusive(&lock_path)?
        }
    };
    if source.is_tarball() && complete(&out) {
        return Ok(out);
    }

    let start = Instant::now();
    let tree = source.prepare(&work)?;
    configure(&tree, &fragment_path, &wanted)?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    progress::run_logged(
        tree.make().arg(format!("-j{jobs}")).arg("bzImage"),
        &work.join("build.log"),
        "kernel build",
        &tree.obj.display().to_string(),
    )?;
    publish(&tree.obj, &root, &key)?;
    eprintln!(
        "kernel ready in {:.0?} ({})",
        start.elapsed(),
        out.display()
    );
    Ok(out)
}

/// Where the kernel comes from.
enum Source {
    /// A source tarball, unpacked once into the build directory.
    Tarball(PathBuf),
    /// An unpacked tree, built out of tree (`O=`) so it stays clean.
    Tree(PathBuf),
}

impl Source {
    fn resolve(given: Option<&Path>) -> Result<Source> {
        let path = match given {
            Some(p) => p.to_path_buf(),
            None => {
                let default = PathBuf::from(DEFAULT_SOURCE);
                if !default.is_file() {
                    deps::ensure_packages(&[DEFAULT_SOURCE_PACKAGE])?;
                }
                default
            }
        };
        let path = path
            .canonicalize()
            .with_context(|| format!("kernel source {}", path.display()))?;
        if path.is_dir() {
            if !path.join("Makefile").is_file() || !path.join("Kconfig").is_file() {
                bail!(
                    "{} is not a kernel source tree (no Makefile/Kconfig)",
                    path.display()
                );
            }
            return Ok(Source::Tree(path));
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tarball = [".tar", ".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.zst"]
            .iter()
            .any(|ext| name.ends_with(ext));
        if !tarball {
            bail!(
                "{}: expected a kernel source tarball (.tar.xz, .tar.gz, .tar) or an unpacked tree",
                path.display()
            );
        }
        Ok(Source::Tarball(path))
    }

    fn is_tarball(&self) -> bool {
        matches!(self, Source::Tarball(_))
    }

    /// What the cache keys on: a tarball by path, size and mtime (hashing 140 MB on every run
    /// would cost more than the cache saves), a tree by path.
    fn identity(&self) -> Result<String> {
        Ok(match self {
            Source::Tarball(p) => {
                let m = fs::metadata(p).with_context(|| format!("{}", p.display()))?;
                let mtime_ns = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
                format!("tarball {} {} {mtime_ns}", p.display(), m.len())
            }
            Source::Tree(p) => format!("tree {}", p.display()),
        })
    }

    /// Returns the tree to build, unpacking a tarball into `work/linux` on first use.
    fn prepare(&self, work: &Path) -> Result<Tree> {
        match self {
            Source::Tree(src) => Ok(Tree {
                src: src.clone(),
                obj: work.join("obj"),
            }),
            Source::Tarball(tarball) => {
                let tree = work.join("linux");
                if !tree.join("Makefile").is_file() {
                    let tmp = work.join("linux.unpack");
                    if tmp.exists() {
                        fs::remove_dir_all(&tmp)
                            .with_context(|| format!("removing {}", tmp.display()))?;
                    }
                    fs::create_dir_all(&tmp)?;
                    eprintln!("unpacking {} …", tarball.display());
                    sh::run(
                        Command::new("tar")
                            .arg("-xf")
                            .arg(tarball)
                            .arg("-C")
                            .arg(&tmp)
                            .arg("--strip-components=1"),
                    )?;
                    if !tmp.join("Makefile").is_file() || !tmp.join("Kconfig").is_file() {
                        bail!(
                            "{} does not hold a kernel tree in a single top directory",
                            tarball.display()
                        );
                    }
                    fs::rename(&tmp, &tree).with_context(|| {
                        format!("renaming {} to {}", tmp.display(), tree.display())
                    })?;
                }
                Ok(Tree {
                    src: tree.clone(),
                    obj: tree,
                })
            }
        }
    }
}

/// A kernel tree and the directory its objects go to (the same for in-tree builds).
struct Tree {
    src: PathBuf,
    obj: PathBuf,
}

impl Tree {
    /// A `make` for this tree with a clean, reproducible environment.
    fn make(&self) -> Command {
        let mut cmd = Command::new("make");
        cmd.current_dir(&self.src).arg("ARCH=x86_64");
        if self.obj != self.src {
            cmd.arg(format!("O={}", self.obj.display()));
        }
        // Settings inherited from a surrounding make or a kernel developer's shell would change
        // what gets built without changing the cache key.
        for var in [
            "MAKEFLAGS",
            "MAKELEVEL",
            "MFLAGS",
            "KBUILD_OUTPUT",
            "CROSS_COMPILE",
            "LLVM",
            "CC",
            "KCFLAGS",
            "KCPPFLAGS",
            "LOCALVERSION",
            "KCONFIG_CONFIG",
            "KCONFIG_ALLCONFIG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("KBUILD_BUILD_USER", "boxlite")
            .env("KBUILD_BUILD_HOST", "boxlite");
        cmd
    }
}

/// Resolves `allnoconfig` + fragment + `olddefconfig`, checks every fragment line took effect,
/// and only then replaces `.config` (left untouched when unchanged, so make skips the work).
fn configure(tree: &Tree, fragment: &Path, wanted: &[config::Setting]) -> Result<()> {
    fs::create_dir_all(&tree.obj)?;
    let kconfig = format!("KCONFIG_CONFIG={CANDIDATE}");
    eprintln!(
        "configuring: allnoconfig + {} + olddefconfig",
        fragment.display()
    );
    sh::output(
        tree.make()
            .arg(&kconfig)
            .arg(format!("KCONFIG_ALLCONFIG={}", fragment.display()))
            .arg("allnoconfig"),
    )?;
    sh::output(tree.make().arg(&kconfig).arg("olddefconfig"))?;
    let candidate = tree.obj.join(CANDIDATE);
    let _ = fs::remove_file(tree.obj.join(format!("{CANDIDATE}.old")));
    let resolved =
        fs::read(&candidate).with_context(|| format!("reading {}", candidate.display()))?;
    let settings = config::parse(
        &String::from_utf8_lossy(&resolved),
        &candidate.display().to_string(),
    )?;
    let unmet = config::unmet(wanted, &settings);
    if !unmet.is_empty() {
        bail!(
            "{} option(s) of {} did not take effect (usually a missing parent option; look up \
             its `depends on` with `make menuconfig`, key `/`):\n  {}\nresolved config: {}",
            unmet.len(),
            fragment.display(),
            unmet.join("\n  "),
            candidate.display()
        );
    }
    let current = tree.obj.join(".config");
    if fs::read(&current).ok().as_deref() == Some(&resolved[..]) {
        fs::remove_file(&candidate)?;
    } else {
        fs::rename(&candidate, &current)?;
    }
    Ok(())
}

/// Copies the outputs into `root/<key>` through a temporary directory and a rename, so a
/// reader never sees a half-written output directory.
fn publish(obj: &Path, root: &Path, key: &str) -> Result<()> {
    let tmp = root.join(format!("{key}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    for (name, from) in OUTPUTS {
        let from = obj.join(from);
        fs::copy(&from, tmp.join(name))
            .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
        fs::File::open(tmp.join(name))?.sync_all()?;
    }
    let out = root.join(key);
    if out.exists() {
        // A rebuilt tree replaces its previous outputs in one step.
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp,
            rustix::fs::CWD,
            &out,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .with_context(|| format!("exchanging {} and {}", tmp.display(), out.display()))?;
        fs::remove_dir_all(&tmp)?;
    } else {
        fs::rename(&tmp, &out)
            .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    }
    Ok(())
}

fn complete(out: &Path) -> bool {
    OUTPUTS.iter().all(|(name, _)| out.join(name).is_file())
}

/// The first [`KEY_LEN`] hex digits of SHA-256 over `parts` joined by NUL bytes (only the
/// last part may contain NUL, which keeps the encoding unambiguous).
fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"\0");
        }
        h.update(part);
    }
    let mut hex = hex::encode(h.finalize());
    hex.truncate(KEY_LEN);
    hex
}

/// The host tools a kernel build runs.
fn ensure_build_tools() -> Result<()> {
    deps::ensure(&[
        ("make", "make"),
        ("gcc", "gcc"),
        ("flex", "flex"),
        ("bison", "bison"),
        ("bc", "bc"),
        ("perl", "perl"),
        ("tar", "tar"),
        ("xz", "xz-utils"),
        ("gzip", "gzip"),
        ("zstd", "zstd"),
        ("cpio", "cpio"),
    ])?;
    // objtool links against libelf.
    deps::ensure_packages(&["libelf-dev"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(short_hash(&[b"ab", b"c"]), short_hash(&[b"a", b"bc"]));
        // A single part hashes as itself, which keeps existing build directories' names.
        assert_eq!(
            short_hash(&[b"abc"]),
            "ba7816bf8f01cfea" // SHA-256("abc")
        );
        assert_eq!(short_hash(&[b"x"]).len(), KEY_LEN);
    }

    #[test]
    fn a_tarball_unpacks_once_without_its_top_directory() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("linux-9.9");
        fs::create_dir(&top).unwrap();
        fs::write(top.join("Makefile"), "VERSION = 9\n").unwrap();
        fs::write(top.join("Kconfig"), "").unwrap();
        let tarball = dir.path().join("linux-9.9.tar.gz");
        sh::run(
            Command::new("tar")
                .arg("-czf")
                .arg(&tarball)
                .arg("-C")
                .arg(dir.path())
                .arg("linux-9.9"),
        )
        .unwrap();
        let work = dir.path().join("work");
        fs::create_dir(&work).unwrap();
        let source = Source::resolve(Some(&tarball)).unwrap();
        assert!(source.is_tarball());
        let tree = source.prepare(&work).unwrap();
        assert_eq!(tree.src, work.join("linux"));
        assert_eq!(tree.obj, tree.src, "tarballs build in place");
        assert_eq!(
            fs::read_to_string(tree.src.join("Makefile")).unwrap(),
            "VERSION = 9\n"
        );
        // A second prepare reuses the tree (and its objects) instead of unpacking again.
        fs::write(tree.src.join("built.o"), "").unwrap();
        source.prepare(&work).unwrap();
        assert!(tree.src.join("built.o").exists());
        assert!(!work.join("linux.unpack").exists());
        // A tarball without a kernel tree is refused before anything is built.
        fs::remove_file(top.join("Kconfig")).unwrap();
        let bad = dir.path().join("bad.tar");
        sh::run(
            Command::new("tar")
                .arg("-cf")
                .arg(&bad)
                .arg("-C")
                .arg(dir.path())
                .arg("linux-9.9"),
        )
        .unwrap();
        let err = Source::resolve(Some(&bad))
            .unwrap()
            .prepare(&dir.path().join("work2"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("does not hold a kernel tree"), "{err}");
    }

    #[test]
    fn sources_must_be_trees_or_tarballs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("linux.zip");
        fs::write(&file, b"").unwrap();
        let err = Source::resolve(Some(&file)).err().unwrap().to_string();
        assert!(err.contains("expected a kernel source tarball"), "{err}");
        let err = Source::resolve(Some(dir.path())).err().unwrap().to_string();
        assert!(err.contains("not a kernel source tree"), "{err}");
        let missing = dir.path().join("nope.tar.xz");
        let err = format!("{:#}", Source::resolve(Some(&missing)).err().unwrap());
        assert!(err.contains("nope.tar.xz"), "{err}");
    }
}
