//! Loop-mounted scratch filesystems for benchmarks (XFS with reflink, ext4).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::image::path_str;
use crate::sh;

/// A filesystem kind a benchmark runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fs {
    /// XFS made with `-m reflink=1`: FICLONE works.
    XfsReflink,
    /// ext4: no reflink, `copy_file_range` copies in the kernel.
    Ext4,
}

impl Fs {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Fs::XfsReflink => "xfs (reflink=1)",
            Fs::Ext4 => "ext4",
        }
    }
}

/// A sparse image file loop-mounted at a directory; unmounted and deleted on drop.
pub struct LoopMount {
    image: PathBuf,
    mountpoint: PathBuf,
}

impl LoopMount {
    /// Makes a `size_gib` GiB filesystem of kind `fs` in `dir` and mounts it.
    pub fn new(dir: &Path, fs: Fs, size_gib: u64) -> Result<LoopMount> {
        if !rustix::process::geteuid().is_root() {
            bail!("loop-mounting a scratch filesystem needs root");
        }
        let image = dir.join(format!("{fs:?}.img"));
        let mountpoint = dir.join(format!("{fs:?}"));
        std::fs::create_dir_all(&mountpoint)?;
        std::fs::File::create(&image)?.set_len(size_gib << 30)?;
        match fs {
            Fs::XfsReflink => sh::output(Command::new("mkfs.xfs").args([
                "-q",
                "-m",
                "reflink=1",
                path_str(&image)?,
            ]))?,
            Fs::Ext4 => {
                sh::output(Command::new("mkfs.ext4").args(["-q", "-F", path_str(&image)?]))?
            }
        };
        sh::output(Command::new("mount").args([
            "-o",
            "loop",
            path_str(&image)?,
            path_str(&mountpoint)?,
        ]))?;
        Ok(LoopMount { image, mountpoint })
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mountpoint).status();
        let _ = std::fs::remove_file(&self.image);
        let _ = std::fs::remove_dir(&self.mountpoint);
    }
}
