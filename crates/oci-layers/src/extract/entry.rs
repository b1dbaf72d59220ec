//! Creating one tar entry after another in the layer directory.

use std::fmt::Display;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec};
use rustix::io::Errno;
use tar::EntryType;
use whiteout::{EntryKind, WHITEOUT_PREFIX};

use super::meta::{Applier, Meta};
use super::path::{MAX_PATH_LEN, normalise, shown, split_last};
use super::pax::{Pax, locate};
use super::record::Ledger;
use super::stream::{BUF_SIZE, Failure, LayerReader, MAX_ENTRY_METADATA, Shared};
use super::tree::{WalkError, Walker, remove};
use super::{ExtractOptions, Extracted, MAX_ENTRIES};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::spec::Compression;

type Archive<'a> = tar::Archive<LayerReader<'a>>;
type TarEntry<'a, 'b> = tar::Entry<'b, LayerReader<'a>>;

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

/// What kind of object an entry becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Marker,
    Dir,
    Symlink,
    HardLink,
    Node(FileType),
    /// Global PAX headers: metadata for the whole archive that we do not use.
    Ignored,
    /// Sockets, unknown or unsupported types.
    Skipped,
}

/// State of one extraction.
pub(crate) struct Extractor {
    walker: Walker,
    applier: Applier,
    compression: Compression,
    /// Normalised path of the current entry.
    path: Vec<u8>,
    /// Normalised hard link target of the current entry.
    link: Vec<u8>,
    pax: Pax,
    buf: Vec<u8>,
    ledger: Ledger,
    root_meta: Option<Meta>,
    files: u64,
    skipped: u64,
}

impl Extractor {
    pub fn new(root: OwnedFd, opts: &ExtractOptions, compression: Compression) -> Extractor {
        Extractor {
            walker: Walker::new(root),
            applier: Applier {
                preserve_owner: opts.preserve_owner,
                is_root: rustix::process::geteuid().is_root(),
                skipped_xattrs: 0,
            },
            compression,
            path: Vec::new(),
            link: Vec::new(),
            pax: Pax::default(),
            buf: vec![0; BUF_SIZE],
            ledger: Ledger::default(),
            root_meta: None,
            files: 0,
            skipped: 0,
        }
    }

    /// A reusable buffer for draining the stream.
    pub fn scratch(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Extracts every entry of the archive.
    pub fn run(&mut self, archive: &mut Archive<'_>, shared: &Shared) -> Result<()> {
        let mut entries = archive
            .entries()
            .map_err(|e| self.stream_error(shared, &e, false))?;
        let mut capture = Vec::new();
        let mut count = 0usize;
        self.path.clear();
        loop {
            shared.begin_metadata(capture);
            let next = entries.next();
            let (start, captured) = shared.end_metadata();
            capture = captured;
            let mut entry = match next {
                None => return Ok(()),
                Some(Ok(entry)) => entry,
                Some(Err(e)) => return Err(self.stream_error(shared, &e, false)),
            };
            count += 1;
            if count > MAX_ENTRIES {
                return Err(Error::Invalid(format!(
                    "the layer has more than {MAX_ENTRIES} entries, more than any real image"
                )));
            }
            self.entry(&mut entry, start, &capture, shared)?;
        }
    }

    /// Turns a failed read of the layer stream into an error saying what broke.
    /// `inside`: the failure came while reading the current entry's data.
    pub fn stream_error(&self, shared: &Shared, e: &io::Error, inside: bool) -> Error {
        let after = match (self.path.is_empty(), inside) {
            (true, false) => String::new(),
            (_, true) => format!(" (in entry {:?})", shown(&self.path)),
            (false, false) => format!(" (after entry {:?})", shown(&self.path)),
        };
        let codec = match self.compression {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        };
        Error::Invalid(match shared.failure() {
            Failure::Source => format!("reading the layer blob failed{after}: {e}"),
            Failure::Decode => format!(
                "the layer's {codec} data is corrupt or truncated{after}: {e}; \
                 the blob is damaged, remove it and fetch the image again"
            ),
            Failure::MetadataTooLarge => format!(
                "a layer entry{after} has more than {MAX_ENTRY_METADATA} bytes of tar \
                 headers, long names and PAX records; the layer is corrupt or hostile"
            ),
            Failure::Tar => format!("the layer is not a valid tar archive{after}: {e}"),
        })
    }

    fn fail(&self, reason: impl Display) -> Error {
        Error::Entry {
            entry: shown(&self.path),
            reason: reason.to_string(),
        }
    }

    fn entry(
        &mut self,
        entry: &mut TarEntry<'_, '_>,
        start: u64,
        capture: &[u8],
        shared: &Shared,
    ) -> Result<()> {
        let pax = match locate(capture, start, entry.raw_header_position()) {
            Ok(range) => range.map(|r| &capture[r]),
            Err(()) => {
                self.path.clear();
                self.path.extend_from_slice(&entry.path_bytes());
                return Err(self.fail("could not be matched with its PAX header (internal error)"));
            }
        };
        if let Some(raw) = pax {
            if let Err(reason) = self.pax.parse(raw) {
                self.path.clear();
                self.path.extend_from_slice(&entry.path_bytes());
                return Err(self.fail(reason));
            }
        } else {
            self.pax.clear();
        }
        let raw_type = entry.header().as_bytes()[156];
        let raw_path = match (&self.pax.path, pax) {
            (Some(range), Some(raw)) => std::borrow::Cow::Borrowed(&raw[range.clone()]),
            _ => entry.path_bytes(),
        };
        if let Err(reason) = normalise(&raw_path, &mut self.path) {
            return Err(Error::Entry {
                entry: shown(&raw_path),
                reason: reason.to_string(),
            });
        }
        let trailing_slash = raw_path.ends_with(b"/");
        drop(raw_path);
        let mut kind = kind_of(entry.header().entry_type(), raw_type, trailing_slash);
        if let (Some(size), false) = (self.pax.size, raw_type == b'S') {
            if size != entry.size() {
                return Err(self.fail("has a PAX size record the tar parser did not apply"));
            }
        }
        let (_, name) = split_last(&self.path);
        if name.starts_with(WHITEOUT_PREFIX.as_bytes()) && kind != Kind::Ignored {
            kind = Kind::Marker;
        }
        let result = match kind {
            Kind::Ignored => Ok(()),
            Kind::Skipped => {
                self.skipped += 1;
                Ok(())
            }
            _ if self.path.is_empty() => self.root_entry(entry, kind),
            Kind::File | Kind::Marker => self.file(entry, kind == Kind::Marker, shared),
            Kind::Dir => self.dir(entry),
            Kind::Symlink => self.symlink(entry, pax),
            Kind::HardLink => self.hard_link(entry, pax),
            Kind::Node(ty) => self.node(entry, ty),
        };
        result?;
        self.drain(entry, shared)
    }

    /// Reads what is left of the entry's data, so the tar parser never skips data (which
    /// would count against the metadata cap).
    fn drain(&mut self, entry: &mut TarEntry<'_, '_>, shared: &Shared) -> Result<()> {
        loop {
            match entry.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.stream_error(shared, &e, true)),
            }
        }
    }

    fn meta(&self, entry: &TarEntry<'_, '_>) -> Result<Meta> {
        let header = entry.header();
        let invalid = |field: &str| self.fail(format!("has an invalid {field} field"));
        let mode = header.mode().map_err(|_| invalid("mode"))?;
        let id = |pax: Option<u64>, header: io::Result<u64>, field: &str| {
            let id = match pax {
                Some(id) => id,
                None => header.map_err(|_| invalid(field))?,
            };
            // u32::MAX is "no change" to chown, never a real id.
            u32::try_from(id)
                .ok()
                .filter(|&id| id != u32::MAX)
                .ok_or_else(|| self.fail(format!("has an out-of-range {field} {id}")))
        };
        let uid = id(self.pax.uid, header.uid(), "uid")?;
        let gid = id(self.pax.gid, header.gid(), "gid")?;
        let mtime = match self.pax.mtime {
            Some(t) => t,
            None => {
                let secs = header.mtime().map_err(|_| invalid("mtime"))?;
                let secs = i64::try_from(secs).map_err(|_| invalid("mtime"))?;
                Timespec {
                    tv_sec: secs,
                    tv_nsec: 0,
                }
            }
        };
        Ok(Meta {
            mode: mode & 0o7777,
            uid,
            gid,
            mtime,
            atime: self.pax.atime.unwrap_or(mtime),
        })
    }

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

    fn root_entry(&mut self, entry: &TarEntry<'_, '_>, kind: Kind) -> Result<()> {
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

    fn file(&mut self, entry: &mut TarEntry<'_, '_>, marker: bool, shared: &Shared) -> Result<()> {
        let meta = self.meta(entry)?;
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

    fn dir(&mut self, entry: &TarEntry<'_, '_>) -> Result<()> {
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
    ) -> Option<std::borrow::Cow<'e, [u8]>> {
        match (&self.pax.linkpath, pax) {
            (Some(range), Some(raw)) => Some(std::borrow::Cow::Borrowed(&raw[range.clone()])),
            _ => entry.link_name_bytes(),
        }
    }

    fn symlink(&mut self, entry: &TarEntry<'_, '_>, pax: Option<&[u8]>) -> Result<()> {
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

    fn hard_link(&mut self, entry: &TarEntry<'_, '_>, pax: Option<&[u8]>) -> Result<()> {
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

    fn node(&mut self, entry: &TarEntry<'_, '_>, ty: FileType) -> Result<()> {
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

    /// Applies directories' modes and times (deepest first, so setting them is not undone
    /// by creating their children) and returns the summary.
    pub fn finish(mut self, diff_id: Digest, bytes: u64) -> Result<Extracted> {
        let (entries, dirs) = std::mem::take(&mut self.ledger).finish();
        for (path, meta) in &dirs {
            let (parent, name) = split_last(path);
            let Ok(parent) = self.walker.dir(parent, false) else {
                continue; // replaced by a later entry
            };
            let Ok(fd) = rustix::fs::openat(&parent, name, DIR_FLAGS, Mode::empty()) else {
                continue;
            };
            Applier::dir_late(fd.as_fd(), meta).map_err(|e| Error::Entry {
                entry: shown(path),
                reason: e.to_string(),
            })?;
        }
        if let Some(meta) = self.root_meta {
            Applier::dir_late(self.walker.root(), &meta).map_err(|e| Error::Entry {
                entry: ".".into(),
                reason: e.to_string(),
            })?;
        }
        Ok(Extracted {
            diff_id,
            entries,
            bytes,
            files: self.files,
            skipped: self.skipped,
            skipped_xattrs: self.applier.skipped_xattrs,
        })
    }
}

fn kind_of(ty: EntryType, raw: u8, trailing_slash: bool) -> Kind {
    match ty {
        // Pre-POSIX tars mark directories only by a trailing slash on a regular entry.
        EntryType::Regular if raw == 0 && trailing_slash => Kind::Dir,
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
        EntryType::Directory => Kind::Dir,
        EntryType::Symlink => Kind::Symlink,
        EntryType::Link => Kind::HardLink,
        EntryType::Char => Kind::Node(FileType::CharacterDevice),
        EntryType::Block => Kind::Node(FileType::BlockDevice),
        EntryType::Fifo => Kind::Node(FileType::Fifo),
        EntryType::XGlobalHeader => Kind::Ignored,
        _ => Kind::Skipped,
    }
}
