//! Real filesystems for tests: loop-mounted images and tmpfs/ramfs, unmounted on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use tempfile::TempDir;

/// A mounted filesystem at `path()`, unmounted (and its loop device detached) on drop.
pub(crate) struct Mounted {
    _dir: TempDir,
    mnt: PathBuf,
    loop_dev: Option<String>,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Serializes loop device setup within this test process.
static LOOP_SETUP: Mutex<()> = Mutex::new(());

/// `losetup --find --show img`, retried: another process may take the free device first.
fn attach(img: &Path) -> String {
    let _guard = LOOP_SETUP.lock().unwrap_or_else(PoisonError::into_inner);
    let mut last = String::new();
    for _ in 0..5 {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(img)
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("losetup {}: {last}", img.display());
}

impl Mounted {
    /// A sparse image of `size_mib` in a tempdir, formatted by `mkfs` with `args`, loop-mounted.
    pub(crate) fn image(mkfs: &str, args: &[&str], size_mib: u64) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        std::fs::File::create_new(&img)
            .unwrap()
            .set_len(size_mib << 20)
            .unwrap();
        run(Command::new(mkfs).args(args).arg(&img));
        let loop_dev = attach(&img);
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mounted = Mounted {
            _dir: dir,
            mnt,
            loop_dev: Some(loop_dev.clone()),
        };
        // If mount fails, dropping `mounted` still detaches the loop device.
        run(Command::new("mount").arg(&loop_dev).arg(&mounted.mnt));
        mounted
    }

    /// XFS with reflink support.
    pub(crate) fn xfs() -> Mounted {
        // mkfs.xfs refuses filesystems under 300 MiB; the image is sparse.
        Mounted::image("mkfs.xfs", &["-q", "-m", "reflink=1"], 400)
    }

    /// ext4: no reflink, `copy_file_range` within the filesystem.
    pub(crate) fn ext4() -> Mounted {
        Mounted::image("mkfs.ext4", &["-q", "-F"], 256)
    }

    /// A memory filesystem of type `fstype` (`tmpfs`, `ramfs`).
    pub(crate) fn memory(fstype: &str) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        run(Command::new("mount")
            .args(["-t", fstype, "-o", "size=256m", fstype])
            .arg(&mnt));
        Mounted {
            _dir: dir,
            mnt,
            loop_dev: None,
        }
    }

    /// The mount point.
    pub(crate) fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(&self.mnt).status();
        if !matches!(status, Ok(s) if s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        if let Some(dev) = &self.loop_dev {
            let _ = Command::new("losetup").arg("-d").arg(dev).status();
        }
    }
}

/// Whether `filefrag -v` reports any extent of `path` as shared with another file.
pub(crate) fn shares_extents(path: &Path) -> bool {
    run(Command::new("filefrag").arg("-v").arg(path)).contains("shared")
}
