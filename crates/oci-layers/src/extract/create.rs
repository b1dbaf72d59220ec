//! Creating each kind of entry in the layer directory, replacing (never writing through)
//! whatever an earlier entry of the layer left at the same path.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use whiteout::EntryKind;

use super::entry::{Extractor, Kind, TarEntry};
use super::over_limit;
use super::path::{MAX_PATH_LEN, normalise, shown, split_last};
use super::stream::Shared;
use super::tree::{WalkError, remove};
use crate::error::{Error, Result};

const FILE_FLAGS: OFlags = OFlags::WRONLY
    .union(OFlags::CREATE)
    .union(OFlags::EXCL)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Permissions of nodes between creation and their final chmod: private to us.
const CREATE_MODE: u32 = 0o600;

impl Extractor {
    /// Opens the current entry's parent directory, creating missing ones.
    fn parent(&mut self) -> Result<Rc<OwnedFd>> {
        let (parent, _) = split_last(&self.path);
        let len = parent.len();
        match self.walker.dir(&self.path[..len], true) {
            Ok(fd) => Ok(fd),
            Err(e) => Err(self.walk_error(e, &self.path[..len], "its parent")),
        }
    }

    fn walk_error(&self, e: WalkError, path: &[u8], what: &str) -> Error {
        let at = |end: usize| shown(&path[..end]);
        self.fail(match e {
            WalkError::NotDir { end, symlink: true } => format!(
                "goes through the symlink {:?} ({what}); following it could leave the layer directory",
                at(end)
            ),
            WalkError::NotDir { end, .. } => {
                format!("goes through {:?}, which is not a directory ({what})", at(end))
            }
            WalkError::Missing { end } => format!("needs {:?}, which does not exist ({what})", at(end)),
            WalkError::Io { end, err } => format!("opening {:?} ({what}): {err}", at(end)),
        })
    }

    /// Runs `make` to create the current entry's name in `parent`; if something is in the
    /// way (an earlier entry of this layer), removes it first, never writing through it.
    fn create<T>(
        &mut self,
        parent: BorrowedFd<'_>,
        what: &str,
        mut make: impl FnMut(BorrowedFd<'_>, &[u8]) -> rustix::io::Result<T>,
    ) -> Result<T> {
        let (_, name) = split_last(&self.path);
        match make(parent, name) {
            Err(Errno::EXIST) => {
                self.clear(parent)?;
                let (_, name) = split_last(&self.path);
                make(parent, name).map_err(|e| self.fail(format!("creating the {what}: {e}")))
            }
            other => other.map_err(|e| self.fail(format!("creating the {what}: {e}"))),
        }
    }

    /// Removes whatever is at the current entry's path (a directory with its tree).
    fn clear(&mut self, parent: BorrowedFd<'_>) -> Result<()> {
        let (_, name) = split_last(&self.path);
        let is_dir = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        remove(parent, name).map_err(|e| self.fail(format!("replacing the earlier entry: {e}")))?;
        self.walker.forget();
        if is_dir {
            self.ledger.forget_tree(&self.path);
        }
        Ok(())
    }

    fn record(&mut self, kind: EntryKind) {
        self.files += 1;
        self.ledger.entry(&self.path, kind);
    }

    pub(super) fn root_entry(&mut self, entry: &TarEntry<'_, '_>, kind: Kind) -> Result<()> {
        if kind != Kind::Dir {
            return Err(Error::Entry {
                entry: shown(&entry.path_bytes()),
                reason: "names the layer root but is not a directory".into(),
            });
        }
        let meta = self.meta(entry)?;
        let root = self.walker.root();
        self.applier
            .dir_early(root, &meta, &self.pax.xattrs)
            .map_err(|e| self.fail(e))?;
        self.root_meta = Some(meta);
        Ok(())
    }

    pub(super) fn file(
        &mut self,
        entry: &mut TarEntry<'_, '_>,
        marker: bool,
        shared: &Shared,
    ) -> Result<()> {
        let meta = self.meta(entry)?;
        if !marker {
            // Checked before anything is written: a sparse entry's holes do not pass through
            // the stream's own limit, and a regular entry's size is known up front.
            let size = entry.size();
            self.data_bytes = self.data_bytes.saturating_add(size);
            if self.data_bytes > self.max_bytes {
                let why = over_limit(self.max_bytes, "");
                return Err(self.fail(format!("declares {size} bytes of data: {why}")));
            }
        }
        let parent = self.parent()?;
        let mode = Mode::from_raw_mode(CREATE_MODE);
        let fd = self.create(parent.as_fd(), "file", |dir, name| {
            rustix::fs::openat(dir, name, FILE_FLAGS, mode)
        })?;
        let mut file = File::from(fd);
        if !marker {
            let expected = entry.size();
            let mut written = 0u64;
            loop {
                let n = match entry.read(&mut self.buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.stream_error(shared, &e, true)),
                };
                file.write_all(&self.buf[..n])
                    .map_err(|e| self.fail(format!("writing the file: {e}")))?;
                written += n as u64;
            }
            if written != expected {
                return Err(self.fail(format!(
                    "is truncated: the layer stream ends after {written} of its {expected} bytes"
                )));
            }
        }
        self.applier
            .file(file.as_fd(), &meta, &self.pax.xattrs)
            .map_err(|e| self.fail(e))?;
        self.record(EntryKind::NonDir);
        Ok(())
    }

    pub(super) fn dir(&mut self, entry: &TarEntry<'_, '_>) -> Result<()> {
        let meta = self.meta(entry)?;
        let parent = self.parent()?;
        let (_, name) = split_last(&self.path);
        let mode = Mode::RWXU;
        match rustix::fs::mkdirat(&parent, name, mode) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.fail(format!("inspecting the earlier entry: {e}")))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    // A directory entry merges with an earlier directory but replaces
                    // anything else (a symlink here is removed, not followed).
                    self.create(parent.as_fd(), "directory", |dir, name| {
                        rustix::fs::mkdirat(dir, name, mode)
                    })?;
                }
            }
            Err(e) => return Err(self.fail(format!("creating the directory: {e}"))),
        }
        let (_, name) = split_last(&self.path);
        let fd = rustix::fs::openat(&parent, name, DIR_FLAGS, Mode::empty())
            .map_err(|e| self.fail(format!("opening the directory: {e}")))?;
        self.applier
            .dir_early(fd.as_fd(), &meta, &self.pax.xattrs)
            .map_err(|e| self.fail(e))?;
        self.ledger.dir(&self.path, meta);
        self.record(EntryKind::Dir);
        Ok(())
    }

    fn link_target<'e>(
        &self,
        entry: &'e TarEntry<'_, '_>,
        pax: Option<&'e [u8]>,
    ) -> Option<Cow<'e, [u8]>> {
        match (&self.pax.linkpath, pax) {
            (Some(range), Some(raw)) => Some(Cow::Borrowed(&raw[range.clone()])),
            _ => entry.link_name_bytes(),
        }
    }

    pub(super) fn symlink(&mut self, entry: &TarEntry<'_, '_>, pax: Option<&[u8]>) -> Result<()> {
        let target = self.link_target(entry, pax).unwrap_or_default();
        if target.is_empty() || target.len() > MAX_PATH_LEN || target.contains(&0) {
            return Err(self.fail("is a symlink with an empty, oversized or NUL-containing target"));
        }
        let meta = self.meta(entry)?;
        let parent = self.parent()?;
        self.create(parent.as_fd(), "symlink", |dir, name| {
            rustix::fs::symlinkat(target.as_ref(), dir, name)
        })?;
        let (_, name) = split_last(&self.path);
        self.applier
            .node(parent.as_fd(), name, &meta, &self.pax.xattrs, false)
            .map_err(|e| self.fail(e))?;
        self.record(EntryKind::NonDir);
        Ok(())
    }

    pub(super) fn hard_link(&mut self, entry: &TarEntry<'_, '_>, pax: Option<&[u8]>) -> Result<()> {
        let raw = self.link_target(entry, pax).unwrap_or_default();
        let mut link = std::mem::take(&mut self.link);
        let normalised = normalise(&raw, &mut link);
        let result = match normalised {
            Err(reason) => Err(self.fail(format!(
                "has a hard link target {:?} that {reason}",
                shown(&raw)
            ))),
            Ok(()) if link.is_empty() => Err(self.fail("is a hard link to the layer root")),
            Ok(()) => self.link_to(&link),
        };
        self.link = link;
        result
    }

    fn link_to(&mut self, target: &[u8]) -> Result<()> {
        let (target_dir, target_name) = split_last(target);
        let target_parent = self
            .walker
            .dir(target_dir, false)
            .map_err(|e| self.walk_error(e, target_dir, "in its hard link target"))?;
        let parent = self.parent()?;
        let linked = self.create(parent.as_fd(), "hard link", |dir, name| {
            // No AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself.
            rustix::fs::linkat(&target_parent, target_name, dir, name, AtFlags::empty())
        });
        if let Err(err) = linked {
            let st = rustix::fs::statat(&target_parent, target_name, AtFlags::SYMLINK_NOFOLLOW);
            let shown_target = shown(target);
            return Err(match st {
                Err(_) => self.fail(format!(
                    "is a hard link to {shown_target:?}, which does not exist in this layer"
                )),
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                    self.fail(format!("is a hard link to the directory {shown_target:?}"))
                }
                Ok(_) => err,
            });
        }
        self.record(EntryKind::NonDir);
        Ok(())
    }

    pub(super) fn node(&mut self, entry: &TarEntry<'_, '_>, ty: FileType) -> Result<()> {
        let meta = self.meta(entry)?;
        let header = entry.header();
        let number = |n: io::Result<Option<u32>>| n.map(Option::unwrap_or_default);
        let numbers = (number(header.device_major()), number(header.device_minor()));
        let (major, minor) = match numbers {
            // A fifo has no device number; writers leave the fields empty or zero.
            _ if ty == FileType::Fifo => (0, 0),
            (Ok(major), Ok(minor)) => (major, minor),
            _ => return Err(self.fail("has an invalid device number")),
        };
        let dev = rustix::fs::makedev(major, minor);
        let parent = self.parent()?;
        let mode = Mode::from_raw_mode(CREATE_MODE);
        let mut denied = false;
        let made = self.create(parent.as_fd(), "device node", |dir, name| {
            let made = rustix::fs::mknodat(dir, name, ty, mode, dev);
            denied = made == Err(Errno::PERM);
            made
        });
        if denied && ty != FileType::Fifo && !self.applier.is_root {
            // Unprivileged: devices cannot be made (as in rootless containers); skip them.
            self.skipped += 1;
            return Ok(());
        }
        made?;
        let (_, name) = split_last(&self.path);
        self.applier
            .node(parent.as_fd(), name, &meta, &self.pax.xattrs, true)
            .map_err(|e| self.fail(e))?;
        self.record(EntryKind::NonDir);
        Ok(())
    }
}
