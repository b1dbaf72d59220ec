//! Reading the layer's tar stream: file data straight into the image's data area, everything
//! else into the in-memory tree.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;

use tar::EntryType;
use whiteout::{Marker, WHITEOUT_PREFIX, parse_marker};

use crate::error::{Error, Limit, Result};
use crate::ondisk::{self, BLOCK, ft};
use crate::options::{Options, Summary};
use crate::output::{Output, ReadFrom};
use crate::path::{names, normalise, shown, split_last};
use crate::pax::Pax;
use crate::source::{Failure, Shared, Source};
use crate::tree::{Body, Dir, Id, Meta, Node, ROOT, Refusal, Tree};
use crate::{MAX_ENTRIES, MAX_ENTRY_METADATA, MAX_INODE_XATTR_BYTES, MAX_SYMLINK_LEN, image};

type Entry<'a, R> = tar::Entry<'a, Source<R>>;

/// What kind of object an entry becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    /// A device or FIFO, by its directory file type.
    Special(u8),
    /// Global PAX headers: metadata for the whole archive, unused.
    Ignored,
    /// Sockets (which cannot be stored meaningfully), unknown or unsupported types.
    Skipped,
}

/// Reads the whole stream and writes the image.
pub(crate) fn write<R: Read>(tar: R, out: &File, options: &Options) -> Result<Summary> {
    let mut reader = Reader::new(out, options);
    reader.read(tar)?;
    reader.finish(out, options)
}

/// State of one reading: of one layer, or of the layers of a merged image in turn.
pub(crate) struct Reader<'f> {
    /// The tree the layers are read into.
    pub tree: Tree,
    data: Output<'f>,
    /// Normalised path of the current entry.
    path: Vec<u8>,
    pax: Pax,
    scratch: Vec<u8>,
    /// What was read so far, all layers together.
    pub summary: Summary,
    max_data: u64,
    /// Tar entries read so far, all layers together.
    count: usize,
    /// Files kept aside under AUFS's `.wh..wh.plnk`, by path, for hard links to them.
    aufs_links: HashMap<Vec<u8>, Id>,
}

impl<'f> Reader<'f> {
    /// A reader of layers whose image goes to `out`.
    pub fn new(out: &'f File, options: &Options) -> Reader<'f> {
        Reader {
            tree: Tree::new(options.implied_mtime),
            // Block 0 holds the superblock, written last.
            data: Output::new(out, BLOCK),
            path: Vec::new(),
            pax: Pax::default(),
            scratch: vec![0; 64 * 1024],
            summary: Summary::default(),
            max_data: options.max_data_bytes,
            count: 0,
            aufs_links: HashMap::new(),
        }
    }

    /// Reads one layer's whole stream into the tree under its current root.
    pub fn read<R: Read>(&mut self, tar: R) -> Result<()> {
        self.path.clear();
        self.aufs_links.clear();
        let shared = Rc::new(Shared::default());
        let mut archive = tar::Archive::new(Source::new(tar, shared.clone()));
        self.run(&mut archive, &shared)?;
        self.summary.layers += 1;
        Ok(())
    }

    /// Writes the image of what was read.
    pub fn finish(self, out: &File, options: &Options) -> Result<Summary> {
        image::finish(self.tree, self.data, out, options, self.summary)
    }

    fn run<R: Read>(
        &mut self,
        archive: &mut tar::Archive<Source<R>>,
        shared: &Shared,
    ) -> Result<()> {
        let mut entries = archive
            .entries()
            .map_err(|e| self.stream_error(shared, e, false))?;
        loop {
            shared.start();
            let next = entries.next();
            shared.stop();
            let mut entry = match next {
                None => return Ok(()),
                Some(Ok(entry)) => entry,
                Some(Err(e)) => return Err(self.stream_error(shared, e, false)),
            };
            self.count += 1;
            if self.count > MAX_ENTRIES {
                return Err(Error::limit(Limit::Entries, MAX_ENTRIES));
            }
            self.entry(&mut entry, shared)?;
        }
    }

    /// The error for a failed read of the stream; `inside`: while reading an entry's data.
    fn stream_error(&self, shared: &Shared, e: io::Error, inside: bool) -> Error {
        let after = match (self.path.is_empty(), inside) {
            (true, false) => String::new(),
            (_, true) => format!(" (in entry {:?})", shown(&self.path)),
            (false, false) => format!(" (after entry {:?})", shown(&self.path)),
        };
        match shared.failure() {
            Failure::Source => Error::Read(e),
            Failure::TooLarge => Error::limit(Limit::EntryMetadata, MAX_ENTRY_METADATA),
            Failure::Tar => Error::Invalid {
                after,
                why: e.to_string(),
            },
        }
    }

    fn fail(&self, reason: impl Into<String>) -> Error {
        Error::Entry {
            entry: shown(&self.path),
            reason: reason.into(),
        }
    }

    fn refused(&self, r: Refusal, path: &[u8]) -> Error {
        match r {
            Refusal::Limit(limit, max) => Error::limit(limit, max),
            Refusal::NotDir { depth, symlink } => {
                let prefix: Vec<&[u8]> = names(path).take(depth).collect();
                let at = shown(&prefix.join(&b'/'));
                self.fail(if symlink {
                    format!("goes through the symlink {at:?}, which could lead anywhere")
                } else {
                    format!("goes through {at:?}, which is not a directory")
                })
            }
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut Entry<'_, R>, shared: &Shared) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let pax = shared
            .pax(entry.raw_header_position())
            .map_err(|()| Error::Entry {
                entry: shown(&raw_path),
                reason: "could not be matched with its PAX header (internal error)".into(),
            })?;
        match pax {
            Some(raw) => self.pax.parse(&raw).map_err(|reason| Error::Entry {
                entry: shown(&raw_path),
                reason,
            })?,
            None => self.pax.clear(),
        }
        let raw_type = entry.header().as_bytes()[156];
        let raw_path = self.pax.path.take().unwrap_or(raw_path);
        normalise(&raw_path, &mut self.path).map_err(|reason| Error::Entry {
            entry: shown(&raw_path),
            reason: reason.into(),
        })?;
        let kind = kind_of(
            entry.header().entry_type(),
            raw_type,
            raw_path.ends_with(b"/"),
        );
        if let (Some(size), false) = (self.pax.size, raw_type == b'S') {
            if size != entry.size() {
                return Err(self.fail("has a PAX size record the tar parser did not apply"));
            }
        }
        self.summary.entries += 1;
        match kind {
            Kind::Ignored => {}
            Kind::Skipped => self.summary.skipped += 1,
            _ => self.place(entry, kind, raw_type, shared)?,
        }
        self.drain(entry, shared)
    }

    /// Reads what is left of the entry's data, so the parser never skips data (which would
    /// count against the metadata cap).
    fn drain<R: Read>(&mut self, entry: &mut Entry<'_, R>, shared: &Shared) -> Result<()> {
        loop {
            match entry.read(&mut self.scratch) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.stream_error(shared, e, true)),
            }
        }
    }

    fn place<R: Read>(
        &mut self,
        entry: &mut Entry<'_, R>,
        kind: Kind,
        raw_type: u8,
        shared: &Shared,
    ) -> Result<()> {
        // A copy, so errors can still name `self.path` while the tree changes.
        let path = self.path.clone();
        self.place_at(&path, entry, kind, raw_type, shared)
    }

    fn place_at<R: Read>(
        &mut self,
        path: &[u8],
        entry: &mut Entry<'_, R>,
        kind: Kind,
        raw_type: u8,
        shared: &Shared,
    ) -> Result<()> {
        let (parent, name) = split_last(path);
        for (depth, dir) in names(parent).enumerate() {
            if let Some(marker) = parse_marker(OsStr::from_bytes(dir)) {
                if is_aufs(marker) {
                    self.summary.skipped += 1;
                    if kind == Kind::File {
                        // AUFS keeps hard-linked files under `.wh..wh.plnk` and links the
                        // real names to them; Docker keeps them aside for those links.
                        let body = self.file_data(entry, raw_type, shared)?;
                        self.count(&body);
                        let meta = self.meta(entry)?;
                        let id = self
                            .tree
                            .detached(Node { meta, body })
                            .map_err(|r| self.refused(r, path))?;
                        self.aufs_links.insert(path.to_vec(), id);
                    }
                    return Ok(());
                }
                let at: Vec<&[u8]> = names(parent).take(depth + 1).collect();
                return Err(self.fail(format!(
                    "lies beneath the whiteout marker {:?}, which cannot have children",
                    shown(&at.join(&b'/'))
                )));
            }
        }
        if path.is_empty() {
            if kind != Kind::Dir {
                return Err(self.fail("would make the layer root a non-directory"));
            }
            let meta = self.meta(entry)?;
            self.tree.set_root_meta(meta);
            return Ok(());
        }
        if let Some(marker) = parse_marker(OsStr::from_bytes(name)) {
            return self.marker(marker, kind, parent);
        }
        let parent_id = self.tree.dir(parent).map_err(|r| self.refused(r, parent))?;
        let body = match kind {
            Kind::HardLink => return self.hard_link(entry, parent_id, name),
            Kind::File => self.file_data(entry, raw_type, shared)?,
            Kind::Dir => Body::Dir(Dir::default()),
            Kind::Symlink => {
                let target = self.link_target(entry);
                if target.is_empty() || target.len() > MAX_SYMLINK_LEN || target.contains(&0) {
                    return Err(self.fail(format!(
                        "is a symlink whose target is empty, over {MAX_SYMLINK_LEN} bytes or \
                         holds a NUL byte"
                    )));
                }
                Body::Symlink(target.into())
            }
            Kind::Special(ty) => {
                let header = entry.header();
                let (major, minor) = match (header.device_major(), header.device_minor()) {
                    (Ok(major), Ok(minor)) => (major.unwrap_or(0), minor.unwrap_or(0)),
                    _ => return Err(self.fail("has an invalid device number field")),
                };
                // A FIFO has no device; only its type matters.
                let (major, minor) = if ty == ft::FIFO {
                    (0, 0)
                } else {
                    (major, minor)
                };
                let rdev = ondisk::encode_dev(major, minor).ok_or_else(|| {
                    self.fail(format!(
                        "has device number {major}:{minor}, beyond 12:20 bits"
                    ))
                })?;
                Body::Special { ty, rdev }
            }
            Kind::Ignored | Kind::Skipped => return Ok(()),
        };
        let meta = self.meta(entry)?;
        self.count(&body);
        self.tree
            .put(parent_id, name, Node { meta, body })
            .map_err(|r| self.refused(r, path))
    }

    fn count(&mut self, body: &Body) {
        if let Body::File { size, .. } = body {
            self.summary.data_bytes += size;
        }
    }

    /// A `.wh.` entry: recorded for the layers below, never content.
    fn marker(&mut self, marker: Marker<'_>, kind: Kind, parent: &[u8]) -> Result<()> {
        if is_aufs(marker) {
            // AUFS bookkeeping (`.wh..wh.plnk`, …); Docker drops it with all beneath it.
            self.summary.skipped += 1;
            return Ok(());
        }
        if kind == Kind::Dir {
            return Err(self.fail("is a whiteout marker but a directory; markers are plain files"));
        }
        let parent_id = self.tree.dir(parent).map_err(|r| self.refused(r, parent))?;
        match marker {
            Marker::Opaque => {
                self.tree.set_opaque(parent_id);
                Ok(())
            }
            Marker::Whiteout(hidden) if hidden.is_empty() || hidden == "." || hidden == ".." => {
                Err(self.fail("is a whiteout marker naming no entry, its directory or its parent"))
            }
            Marker::Whiteout(hidden) => self
                .tree
                .whiteout(parent_id, hidden.as_bytes())
                .map_err(|r| self.refused(r, parent)),
        }
    }

    fn link_target<R: Read>(&mut self, entry: &Entry<'_, R>) -> Vec<u8> {
        match self.pax.linkpath.take() {
            Some(target) => target,
            None => entry
                .link_name_bytes()
                .map(|t| t.into_owned())
                .unwrap_or_default(),
        }
    }

    fn hard_link<R: Read>(&mut self, entry: &Entry<'_, R>, parent: Id, name: &[u8]) -> Result<()> {
        let raw = self.link_target(entry);
        let mut target = Vec::new();
        normalise(&raw, &mut target)
            .map_err(|reason| self.fail(format!("is a hard link whose target {reason}")))?;
        let found = self
            .tree
            .lookup(&target)
            .or_else(|| self.aufs_links.get(&target).copied())
            .or_else(|| self.tree.lookup_lower(&target));
        let Some(id) = found else {
            let lower = if self.tree.root == ROOT {
                ""
            } else {
                " and no earlier layer left"
            };
            return Err(self.fail(format!(
                "is a hard link to {:?}, which no earlier entry of the layer made{lower}",
                shown(&target)
            )));
        };
        if matches!(self.tree.nodes[id as usize].body, Body::Dir(_)) {
            return Err(self.fail(format!(
                "is a hard link to the directory {:?}",
                shown(&target)
            )));
        }
        self.tree
            .link(parent, name, id)
            .map_err(|r| self.refused(r, &target))
    }

    /// Copies a regular file's data into the data area, block-aligned.
    fn file_data<R: Read>(
        &mut self,
        entry: &mut Entry<'_, R>,
        raw_type: u8,
        shared: &Shared,
    ) -> Result<Body> {
        // A GNU sparse file's logical size is in its header; the tar parser fills the holes.
        let expected = if raw_type == b'S' {
            entry
                .header()
                .size()
                .map_err(|_| self.fail("has an invalid size field"))?
        } else {
            entry.size()
        };
        let room = self.max_data.saturating_sub(self.summary.data_bytes);
        if expected > room {
            return Err(Error::limit(Limit::DataBytes, self.max_data));
        }
        let start = self.data.pos();
        let mut size = 0u64;
        loop {
            let want = usize::try_from(expected - size).unwrap_or(usize::MAX);
            match self.data.read_from(entry, want) {
                Ok(0) => break,
                Ok(n) => size += n as u64,
                Err(ReadFrom::Read(e)) => return Err(self.stream_error(shared, e, true)),
                Err(ReadFrom::Write(e)) => return Err(Error::Write(e)),
            }
            if size > expected {
                return Err(self.fail("has more data than its header says"));
            }
        }
        if size != expected {
            return Err(Error::Invalid {
                after: format!(" (in entry {:?})", shown(&self.path)),
                why: format!(
                    "the archive ends within the entry's data ({size} of {expected} bytes)"
                ),
            });
        }
        let end = start + size.next_multiple_of(BLOCK);
        self.data.zeros_to(end).map_err(Error::Write)?;
        let blkaddr = if size == 0 {
            0
        } else {
            u32::try_from(start / BLOCK).map_err(|_| Error::limit(Limit::ImageSize, u32::MAX))?
        };
        Ok(Body::File { blkaddr, size })
    }

    /// The entry's owner, mode, time and xattrs.
    fn meta<R: Read>(&mut self, entry: &Entry<'_, R>) -> Result<Meta> {
        let header = entry.header();
        let invalid = |field: &str| self.fail(format!("has an invalid {field} field"));
        let mode = header.mode().map_err(|_| invalid("mode"))?;
        // Some writers leave an owner field blank for root; GNU tar and docker read 0.
        let blank = |raw: &[u8]| raw.iter().all(|&b| b == 0 || b == b' ');
        let id = |pax: Option<u64>, parsed: io::Result<u64>, raw: &[u8], field: &str| {
            let id = match (pax, parsed) {
                (Some(id), _) | (None, Ok(id)) => id,
                (None, Err(_)) if blank(raw) => 0,
                (None, Err(_)) => return Err(invalid(field)),
            };
            // u32::MAX is the kernel's invalid id, never a real owner.
            u32::try_from(id)
                .ok()
                .filter(|&id| id != u32::MAX)
                .ok_or_else(|| self.fail(format!("has an out-of-range {field} {id}")))
        };
        let uid = id(self.pax.uid, header.uid(), &header.as_old().uid, "uid")?;
        let gid = id(self.pax.gid, header.gid(), &header.as_old().gid, "gid")?;
        let (mtime, mtime_nsec) = match self.pax.mtime {
            Some(t) => t,
            None => {
                let secs = header.mtime().map_err(|_| invalid("mtime"))?;
                (i64::try_from(secs).map_err(|_| invalid("mtime"))?, 0)
            }
        };
        let mut xattrs: Vec<ondisk::Xattr> = Vec::new();
        for (name, value) in std::mem::take(&mut self.pax.xattrs) {
            // Overlay metadata must come from the layer's markers alone: an image's own
            // `trusted.overlay.*` could redirect or hide paths of other layers.
            let stored = (!name.starts_with(b"trusted.overlay."))
                .then(|| ondisk::xattr_index(&name))
                .flatten();
            let Some((index, suffix)) = stored else {
                self.summary.skipped_xattrs += 1;
                continue;
            };
            // A repeated name: the last record wins, as setting them in order would.
            xattrs.retain(|(i, n, _)| !(*i == index && **n == *suffix));
            xattrs.push((index, suffix.into(), value.into()));
        }
        if ondisk::xattr_size(&xattrs) > MAX_INODE_XATTR_BYTES {
            return Err(self.fail(format!(
                "has more than {MAX_INODE_XATTR_BYTES} bytes of extended attributes"
            )));
        }
        Ok(Meta {
            mode: (mode & 0o7777) as u16,
            uid,
            gid,
            mtime,
            mtime_nsec,
            xattrs,
        })
    }
}

/// Whether a marker is AUFS bookkeeping (`.wh..wh.plnk`, …) rather than a whiteout: it
/// would hide a `.wh.*` name, which can never exist, so dropping it is exact.
fn is_aufs(marker: Marker<'_>) -> bool {
    matches!(marker, Marker::Whiteout(hidden) if hidden.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()))
}

fn kind_of(ty: EntryType, raw: u8, trailing_slash: bool) -> Kind {
    match ty {
        // Pre-POSIX tars mark directories only by a trailing slash on a regular entry.
        EntryType::Regular if raw == 0 && trailing_slash => Kind::Dir,
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
        EntryType::Directory => Kind::Dir,
        EntryType::Symlink => Kind::Symlink,
        EntryType::Link => Kind::HardLink,
        EntryType::Char => Kind::Special(ft::CHR),
        EntryType::Block => Kind::Special(ft::BLK),
        EntryType::Fifo => Kind::Special(ft::FIFO),
        EntryType::XGlobalHeader => Kind::Ignored,
        _ => Kind::Skipped,
    }
}
