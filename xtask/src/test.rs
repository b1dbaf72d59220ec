//! `cargo xtask test`: everything CI checks, in the order that fails fastest.
//!
//! It installs what it needs itself, so a fresh Debian machine with a Rust toolchain (as
//! root) passes it: the host programs of [`TEST_TOOLS`] up front, cargo-fuzz when the nightly
//! toolchain is there; the later steps ensure their own (the kernel build its source and
//! tools, `nested-kvm` QEMU). Not root and something missing: it fails with the `apt-get`
//! command to run.

use anyhow::Result;
use clap::Args as ClapArgs;

use crate::{demo, deps, fuzz, guest, kernel, sh, virtiofsd};

/// The host programs the tests run, as (a command, the Debian package that ships it), one
/// line per package, each with the tests that need it; a new test's tools go here. What the
/// other steps of `cargo xtask test` run, they ensure for themselves when they run: the
/// guest kernel's source and build tools ([`kernel::build`], nothing when cached) and QEMU
/// and e2fsprogs for `nested-kvm`. debootstrap only builds the demo's and the benchmarks'
/// Debian tree ([`crate::image::debian_minbase`]), which no test uses.
const TEST_TOOLS: &[(&str, &str)] = &[
    // Disks: boxlite's own (mkfs.ext4, e2fsck: crates/boxlite/src/disk), the VM and PID 1
    // tests' (crates/{guest,vmm}/tests; debugfs and dumpe2fs read them back), fastcopy's
    // ext4 loop mounts and filefrag (crates/fastcopy/src/testutil, crates/oci-layers/tests).
    ("mkfs.ext4", "e2fsprogs"),
    // XFS with reflinks: crates/fastcopy/src/testutil/mount.rs, crates/oci-layers/tests/rootfs_*.
    ("mkfs.xfs", "xfsprogs"),
    // EROFS images checked by a second reader: crates/erofs/tests, crates/boxlite/src/disk.
    ("fsck.erofs", "erofs-utils"),
    // Loop devices and mounts: crates/guest/tests/pid1.rs, crates/fastcopy/src/testutil.
    ("losetup", "mount"),
    // unshare (crates/guest/tests/{pid1,support}), setpriv (crates/guest/tests/exec.rs).
    ("unshare", "util-linux"),
    // A pseudo-terminal around the CLI (progress bars, `run -t`): crates/cli/tests/{terminal,vm_boxes}.rs.
    ("script", "bsdutils"),
    // Real registries on 127.0.0.1 (run as `docker-registry serve`, never the packaged
    // service), their htpasswd files and TLS and token-signing keys, and images copied in and
    // out: crates/registry-fixture, crates/registry/tests, `cargo xtask bench pull`.
    ("docker-registry", "docker-registry"),
    ("htpasswd", "apache2-utils"),
    ("openssl", "openssl"),
    ("skopeo", "skopeo"),
    // Images compared against umoci: crates/oci-layers/{src/builder/tests.rs,tests}.
    ("umoci", "umoci"),
    // Layers and copies as tar streams: crates/{cli,guest,oci-layers}/tests.
    ("tar", "tar"),
    ("gzip", "gzip"),
    // Boxes booted under QEMU: crates/{boxlite,cli,guest}/tests, xtask/src/kernel/boot_tests.rs.
    ("qemu-system-x86_64", "qemu-system-x86"),
    // The guest's network card served by passt (the agent's own network configuration):
    // crates/guest/tests/vm_net.rs.
    ("passt", "passt"),
    // The kernel boot tests' static test inits: xtask/src/kernel/boot_tests.rs.
    ("gcc", "gcc"),
    // Reading our initramfs archives back: xtask/src/cpio/tests.rs.
    ("cpio", "cpio"),
];

/// Arguments of `cargo xtask test`.
#[derive(ClapArgs)]
pub struct Args {
    /// Skip formatting and clippy (for quick local iterations).
    #[arg(long)]
    no_lint: bool,
    /// Seconds to run each fuzz target after the tests (0 to skip).
    #[arg(long, default_value_t = 30)]
    fuzz_seconds: u64,
    /// Skip `nested-kvm` (our VMM booting Linux on KVM emulated under TCG).
    #[arg(long)]
    no_nested_kvm: bool,
    /// Extra arguments passed to `cargo test` (e.g. a test name filter after `--`).
    #[arg(trailing_var_arg = true)]
    rest: Vec<String>,
}

/// Installs what is missing, then runs fmt, clippy and the whole test suite.
pub fn run(args: Args) -> Result<()> {
    // Before anything slow, so a missing package fails in seconds, not after clippy.
    deps::ensure(TEST_TOOLS)?;
    let fuzz = args.fuzz_seconds > 0 && fuzz::ensure_cargo_fuzz()?;
    if !args.no_lint {
        sh::run(sh::cargo().args(["fmt", "--all", "--", "--check"]))?;
        sh::run(sh::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    // The boot tests find the kernel, the agent's initramfs and the static network probe
    // (run inside boxes) through these; both builds are no-ops once cached.
    let kernel_dir = kernel::build(&kernel::Args::default())?;
    let guest = guest::build()?;
    // Bind volumes' daemon (crates/{boxlite,cli}/tests, crates/vmm's virtio-fs tests).
    let virtiofsd = virtiofsd::ensure()?;
    sh::run(
        sh::cargo()
            .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
            .env("BOXLITE_KERNEL_DIR", &kernel_dir)
            .env("BOXLITE_GUEST_INITRAMFS", &guest.initramfs)
            .env("BOXLITE_NETPROBE", &guest.netprobe)
            .env("BOXLITE_VIRTIOFSD", &virtiofsd)
            .args(&args.rest),
    )?;
    // `--all-targets` leaves doc tests out; they run here, with the same guest files and the
    // supervisor the test build made (a doc test runs from a temporary directory, so the
    // runtime cannot find it beside the executable).
    let mut doc = sh::cargo();
    doc.args(["test", "--workspace", "--doc"])
        .env("BOXLITE_KERNEL_DIR", &kernel_dir)
        .env("BOXLITE_GUEST_INITRAMFS", &guest.initramfs)
        .env("BOXLITE_NETPROBE", &guest.netprobe)
        .env("BOXLITE_VIRTIOFSD", &virtiofsd);
    let supervisor = demo::target_dir().join("debug/boxlite-supervisor");
    if supervisor.is_file() {
        doc.env("BOXLITE_SUPERVISOR", supervisor);
    }
    sh::run(&mut doc)?;
    // Without hardware KVM the vmm crate's full-boot test skips; here it runs on a KVM made
    // under emulation instead, so every run proves our VMM boots Linux to the agent.
    if !args.no_nested_kvm && !crate::nested::hardware_kvm() {
        crate::nested::run(crate::nested::Args::default())?;
    }
    if fuzz {
        fuzz::run(fuzz::Args {
            seconds: args.fuzz_seconds,
        })?;
    } else if args.fuzz_seconds > 0 {
        eprintln!(
            "fuzz smoke run skipped: no nightly toolchain (`rustup toolchain install nightly`)"
        );
    }
    Ok(())
}
