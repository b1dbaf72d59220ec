//! Shared setup of the end-to-end tests: a temporary state directory with a small real image
//! (the host's dash and coreutils with their libraries), and a runtime that boots boxes with
//! the `cargo xtask kernel` kernel and the `cargo xtask guest` initramfs under QEMU.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use boxlite::{Runtime, RuntimeOptions, SupervisorCommand};
use oci_layers::{Compression, LayoutBuilder};

/// The image every test box runs.
pub const IMAGE: &str = "e2e-tools";

/// The kernel and initramfs, or `None` (with the reason printed) when the environment does
/// not give them.
pub fn guest() -> Option<(PathBuf, PathBuf)> {
    let kernel_dir = std::env::var_os("BOXLITE_KERNEL_DIR").map(PathBuf::from);
    let initramfs = std::env::var_os("BOXLITE_GUEST_INITRAMFS").map(PathBuf::from);
    match (kernel_dir, initramfs) {
        (Some(dir), Some(initramfs)) => {
            let vmlinux = dir.join("vmlinux");
            let kernel = if vmlinux.is_file() {
                vmlinux
            } else {
                dir.join("bzImage")
            };
            Some((kernel, initramfs))
        }
        _ => {
            eprintln!(
                "skipped: set BOXLITE_KERNEL_DIR=$(cargo xtask kernel --print-path) and \
                 BOXLITE_GUEST_INITRAMFS=$(cargo xtask guest --print-path) to boot boxes \
                 (`cargo xtask test` does)"
            );
            None
        }
    }
}

/// A state directory with [`IMAGE`] imported.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

impl Fixture {
    /// A fresh fixture, or `None` when boxes cannot boot here (see [`guest`]).
    pub fn new() -> Option<Fixture> {
        let (kernel, initramfs) = guest()?;
        Some(Fixture::with_guest(kernel, initramfs))
    }

    /// A fixture whose boxes can be created and removed but, without the guest files from
    /// the environment, not started.
    pub fn image_only() -> Fixture {
        let (kernel, initramfs) = guest().unwrap_or_else(|| {
            (
                PathBuf::from("/nonexistent/vmlinux"),
                PathBuf::from("/nonexistent/initramfs.cpio.gz"),
            )
        });
        Fixture::with_guest(kernel, initramfs)
    }

    fn with_guest(kernel: PathBuf, initramfs: PathBuf) -> Fixture {
        // Short: socket paths under it must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("bx")
            .tempdir_in("/tmp")
            .unwrap();
        let fixture = Fixture {
            dir,
            kernel,
            initramfs,
        };
        let layout = fixture.dir.path().join("layout");
        tools_image().write_layout(&layout, "latest").unwrap();
        fixture
            .runtime()
            .import_image(&layout, Some(IMAGE))
            .unwrap();
        fixture
    }

    /// The state directory.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Runtime options for the state directory.
    pub fn options(&self) -> RuntimeOptions {
        options_for(&self.home(), &self.kernel, &self.initramfs)
    }

    /// A runtime on the state directory.
    pub fn runtime(&self) -> Runtime {
        Runtime::open(self.options()).unwrap()
    }
}

impl Drop for Fixture {
    /// Kills what a failed test left running: supervisors are detached on purpose, so
    /// nothing else would.
    fn drop(&mut self) {
        // On a thread of its own: a test's async runtime may be the one dropping this.
        let options = self.options();
        let boxes = std::thread::spawn(move || {
            boxlite::blocking::Runtime::open(options)
                .and_then(|rt| rt.list())
                .unwrap_or_default()
        })
        .join()
        .unwrap_or_default();
        for record in boxes {
            if let Some(pid) = record.supervisor_pid {
                // A pid this test's boxes recorded; at worst it names a process that is
                // already gone.
                let _ = boxlite::internals::signal_pid(pid, libc::SIGKILL);
            }
        }
    }
}

/// Runtime options for state directory `home` booting `kernel` and `initramfs`.
pub fn options_for(home: &Path, kernel: &Path, initramfs: &Path) -> RuntimeOptions {
    let mut options = RuntimeOptions::new(home);
    options.kernel = Some(kernel.to_path_buf());
    options.initramfs = Some(initramfs.to_path_buf());
    // Inside nested-kvm's L1, where the test finds our VMM.
    options.vmm = std::env::var_os("BOXLITE_VMM").map(PathBuf::from);
    options.virtiofsd = std::env::var_os("BOXLITE_VIRTIOFSD").map(PathBuf::from);
    options.supervisor = Some(SupervisorCommand {
        program: env!("CARGO_BIN_EXE_boxlite-supervisor").into(),
        args: Vec::new(),
    });
    options
}

/// Options for a box of [`IMAGE`] named `name`.
pub fn named(name: &str) -> boxlite::BoxOptions {
    let mut options = boxlite::BoxOptions::new(IMAGE);
    options.name = Some(name.into());
    options
}

/// Whether process `pid` exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// An image of the host's dash and a few coreutils, with their shared libraries.
pub fn tools_image() -> LayoutBuilder {
    let tree = tempfile::tempdir().unwrap().keep();
    let programs = [
        ("/bin/dash", "bin/sh"),
        ("/usr/bin/cat", "bin/cat"),
        ("/usr/bin/echo", "bin/echo"),
        ("/usr/bin/sleep", "bin/sleep"),
        ("/usr/bin/ls", "bin/ls"),
        ("/usr/bin/head", "bin/head"),
        ("/usr/bin/sha256sum", "bin/sha256sum"),
        ("/usr/bin/true", "bin/true"),
        ("/usr/bin/test", "bin/test"),
        ("/usr/bin/sync", "bin/sync"),
        ("/usr/bin/seq", "bin/seq"),
        ("/usr/bin/chmod", "bin/chmod"),
        ("/usr/bin/mknod", "bin/mknod"),
        ("/usr/bin/mkfifo", "bin/mkfifo"),
        ("/usr/bin/mkdir", "bin/mkdir"),
    ];
    for (host, inside) in programs {
        copy_with_libs(host, &tree, inside);
    }
    for d in ["etc", "proc", "sys", "dev", "root", "tmp", "srv"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(tree.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(tree.join("etc/os-release"), "NAME=\"e2e tools\"\n").unwrap();
    LayoutBuilder::new()
        .layer_dir(&tree, Compression::Gzip)
        .env(["PATH=/bin", "IMAGE_VAR=from-image"])
        .working_dir("/srv")
        .cmd(["/bin/sh"])
}

fn copy_with_libs(host: &str, tree: &Path, inside: &str) {
    let dest = tree.join(inside);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(host, &dest).unwrap();
    let out = Command::new("ldd").arg(host).output().unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(lib) = line.split_whitespace().find(|w| w.starts_with('/')) {
            let dest = tree.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(lib, &dest).unwrap();
        }
    }
}
