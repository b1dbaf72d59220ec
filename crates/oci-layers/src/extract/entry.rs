//! Creating one tar entry after another in the layer directory.

use std::fmt::Display;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags, Timespec};
use tar::EntryType;
use whiteout::WHITEOUT_PREFIX;

use super::meta::{Applier, Meta};
use super::path::{normalise, shown, split_last};
use super::pax::{Pax, locate};
use super::record::Ledger;
use super::stream::{BUF_SIZE, Failure, LayerReader, MAX_ENTRY_METADATA, Shared};
use super::tree::Walker;
use super::{ExtractOptions, Extracted, MAX_ENTRIES, over_limit};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::spec::Compression;

type Archive<'a> = tar::Archive<LayerReader<'a>>;
pub(super) type TarEntry<'a, 'b> = tar::Entry<'b, LayerReader<'a>>;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// What kind of object an entry becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
    pub(super) walker: Walker,
    pub(super) applier: Applier,
    pub(super) compression: Compression,
    /// Normalised path of the current entry.
    pub(super) path: Vec<u8>,
    /// Normalised hard link target of the current entry.
    pub(super) link: Vec<u8>,
    pub(super) pax: Pax,
    pub(super) buf: Vec<u8>,
    pub(super) ledger: Ledger,
    pub(super) root_meta: Option<Meta>,
    pub(super) files: u64,
    pub(super) skipped: u64,
    /// [`ExtractOptions::max_bytes`].
    pub(super) max_bytes: u64,
    /// Bytes of file data the entries so far declared (sparse holes included).
    pub(super) data_bytes: u64,
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
            max_bytes: opts.max_bytes,
            data_bytes: 0,
        }
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
            Failure::TooLarge => over_limit(self.max_bytes, &after),
            Failure::MetadataTooLarge => format!(
                "a layer entry{after} has more than {MAX_ENTRY_METADATA} bytes of tar \
                 headers, long names and PAX records; the layer is corrupt or hostile"
            ),
            Failure::Tar => format!("the layer is not a valid tar archive{after}: {e}"),
        })
    }

    pub(super) fn fail(&self, reason: impl Display) -> Error {
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

    pub(super) fn meta(&self, entry: &TarEntry<'_, '_>) -> Result<Meta> {
        let header = entry.header();
        let invalid = |field: &str| self.fail(format!("has an invalid {field} field"));
        let mode = header.mode().map_err(|_| invalid("mode"))?;
        // Some writers leave an owner field all NUL (or blank) for "root"; GNU tar, umoci and
        // docker read that as 0, and so do we.
        let blank = |raw: &[u8]| raw.iter().all(|&b| b == 0 || b == b' ');
        let id = |pax: Option<u64>, parsed: io::Result<u64>, raw: &[u8], field: &str| {
            let id = match (pax, parsed) {
                (Some(id), _) => id,
                (None, Ok(id)) => id,
                (None, Err(_)) if blank(raw) => 0,
                (None, Err(_)) => return Err(invalid(field)),
            };
            // u32::MAX is "no change" to chown, never a real id.
            u32::try_from(id)
                .ok()
                .filter(|&id| id != u32::MAX)
                .ok_or_else(|| self.fail(format!("has an out-of-range {field} {id}")))
        };
        let uid = id(self.pax.uid, header.uid(), &header.as_old().uid, "uid")?;
        let gid = id(self.pax.gid, header.gid(), &header.as_old().gid, "gid")?;
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
