//! A small writer for the "newc" cpio format that Linux unpacks as its initramfs.
//!
//! Entries are written as they are added, so an archive never sits in memory. Every entry is
//! owned by root with mtime 0, which keeps archives reproducible. Parents must be added before
//! their children because the kernel's unpacker does not create missing directories.

// The guest-agent initramfs packer is the first non-test user; until it lands only the
// boot tests call this.
#![cfg_attr(not(test), allow(dead_code))]

use std::collections::HashSet;
use std::io::{self, Write};

use anyhow::{Context, Result, bail, ensure};
use flate2::Compression;
use flate2::write::GzEncoder;

/// The newc magic (no checksums).
const MAGIC: &str = "070701";
/// The name of the entry that ends an archive.
const TRAILER: &str = "TRAILER!!!";
/// Longest name the kernel's unpacker accepts (PATH_MAX, including the NUL).
const MAX_NAME: usize = 4096;
/// File sizes are 8 hex digits in the header.
const MAX_FILE: u64 = u32::MAX as u64;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;

/// A newc cpio archive being written to `W`.
pub struct Archive<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
    dirs: HashSet<String>,
    names: HashSet<String>,
}

/// Starts a gzip-compressed archive, the form the kernel takes with `CONFIG_RD_GZIP`.
pub fn gzip<W: Write>(out: W) -> Archive<GzEncoder<W>> {
    Archive::new(GzEncoder::new(out, Compression::default()))
}

impl<W: Write> Archive<W> {
    /// Starts an uncompressed archive on `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            next_ino: 1,
            written: 0,
            dirs: HashSet::new(),
            names: HashSet::new(),
        }
    }

    /// Adds a directory with permission bits `perm` (e.g. 0o755).
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<()> {
        let name = self.claim(path)?;
        self.entry(&name, S_IFDIR | perm, 2, (0, 0), &[])?;
        self.dirs.insert(name);
        Ok(())
    }

    /// Adds a regular file holding `data` with permission bits `perm` (e.g. 0o755).
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<()> {
        ensure!(
            data.len() as u64 <= MAX_FILE,
            "cpio: {path} is {} bytes; newc holds at most {MAX_FILE}",
            data.len()
        );
        let name = self.claim(path)?;
        self.entry(&name, S_IFREG | perm, 1, (0, 0), data)
    }

    /// Adds a symbolic link at `path` pointing to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        ensure!(
            !target.is_empty() && !target.contains('\0') && target.len() < MAX_NAME,
            "cpio: symlink {path} has an invalid target {target:?}"
        );
        let name = self.claim(path)?;
        self.entry(&name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// Adds a character device node, such as `dev/console` (5, 1).
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        let name = self.claim(path)?;
        self.entry(&name, S_IFCHR | perm, 1, (major, minor), &[])
    }

    /// Adds a block device node.
    pub fn block_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        let name = self.claim(path)?;
        self.entry(&name, S_IFBLK | perm, 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> Result<W> {
        self.header(TRAILER, 0, 1, 0, (0, 0), 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Checks `path` and reserves its archive name (relative, no leading `/`).
    fn claim(&mut self, path: &str) -> Result<String> {
        let name = path.trim_start_matches('/');
        ensure!(!name.is_empty(), "cpio: empty entry name {path:?}");
        ensure!(
            name.len() < MAX_NAME,
            "cpio: name of {} bytes is longer than PATH_MAX",
            name.len()
        );
        ensure!(!name.contains('\0'), "cpio: {path:?} contains a NUL byte");
        for part in name.split('/') {
            ensure!(
                !part.is_empty() && part != "." && part != "..",
                "cpio: {path:?} is not a normalised path (empty, `.` or `..` component)"
            );
        }
        if let Some((parent, _)) = name.rsplit_once('/') {
            if !self.dirs.contains(parent) {
                bail!("cpio: add directory {parent:?} before {path:?}; the kernel won't create it");
            }
        }
        ensure!(
            self.names.insert(name.to_owned()),
            "cpio: {path:?} is already in the archive"
        );
        Ok(name.to_owned())
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<()> {
        let ino = self.next_ino;
        self.next_ino = ino.checked_add(1).context("cpio: too many entries")?;
        self.header(name, ino, nlink, mode, rdev, data.len() as u32)?;
        self.put(data)?;
        self.pad()
    }

    fn header(
        &mut self,
        name: &str,
        ino: u32,
        nlink: u32,
        mode: u32,
        (rmajor, rminor): (u32, u32),
        size: u32,
    ) -> Result<()> {
        let namesize = name.len() as u32 + 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, namesize, 0,
        ];
        let mut head = String::with_capacity(110 + name.len() + 1);
        head.push_str(MAGIC);
        for f in fields {
            head.push_str(&format!("{f:08x}"));
        }
        head.push_str(name);
        head.push('\0');
        self.put(head.as_bytes())?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Pads to the 4-byte boundary newc puts after names and after data.
    fn pad(&mut self) -> Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
