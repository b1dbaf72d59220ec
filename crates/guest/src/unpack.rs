//! Uploads: a tar stream unpacked under a directory of the box.
//!
//! Every entry is created relative to a descriptor of the destination directory, and every
//! lookup below it uses `RESOLVE_BENEATH`: an entry with `..`, or one whose directory is a
//! symlink leading elsewhere, is rejected instead of written outside the destination. Absolute
//! entry names are taken relative to the destination (as `tar` does by default). Owners are
//! restored when the agent runs as root, modes (set-id bits included) and modification times
//! always; directories get their final mode and time after their contents are in place.
//! Extended attributes are not restored. An existing file is replaced by an entry of the same
//! name; an existing directory is kept (and merged into) when the entry is a directory, and is
//! an error otherwise.
//!
//! The `tar` crate buffers GNU long names and PAX headers whole, so a meter caps the bytes it
//! reads between two entries ([`MAX_ENTRY_METADATA`]).

use std::cell::Cell;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use tar::EntryType;

use crate::error::{Error, Result};
use crate::root::BoxRoot;

/// The longest entry name or link target accepted: Linux's `PATH_MAX`, as nothing longer can
/// be created or looked up in one call anyway.
pub const MAX_ENTRY_PATH_LEN: usize = 4096;

/// Most bytes the tar parser may read between two entries (headers, padding, GNU long names,
/// PAX records): it keeps them in memory, so an archive must not make it read gigabytes there.
/// Real archives use a few KiB; a PAX header full of long paths stays well under this.
pub const MAX_ENTRY_METADATA: usize = 1024 * 1024;

/// Most bytes of directory paths kept for the final pass that restores directory modes and
/// times; past it, later directories keep the mode and time they end up with (their mode is
/// still set when they are created). Bounds memory for archives with millions of directories.
pub const MAX_PENDING_DIR_BYTES: usize = 16 * 1024 * 1024;

/// What an upload wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unpacked {
    /// Entries created (the destination itself not counted).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries of kinds that cannot be unpacked (e.g. GNU volume labels), skipped.
    pub skipped: u64,
}

/// Unpacks the tar stream `input` under `dest` (a directory of the box, created if missing).
pub fn unpack(root: &BoxRoot, dest: &str, input: impl Read) -> Result<Unpacked> {
    let dest_fd = open_or_create_dest(root, dest)?;
    let meter = Rc::new(MeterState::default());
    let mut archive = tar::Archive::new(Meter {
        inner: input,
        state: meter.clone(),
    });
    let mut entries = archive
        .entries()
        .map_err(|e| Error::io(format!("reading the upload to {dest}"), e))?;
    let mut unpacker = Unpacker {
        dest,
        dest_fd,
        as_root: rustix::process::geteuid().is_root(),
        pending: Vec::new(),
        pending_bytes: 0,
        done: Unpacked::default(),
    };
    loop {
        meter.start();
        let next = entries.next();
        meter.stop();
        let mut entry = match next {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(e)) => return Err(meter.error(dest, e)),
        };
        unpacker.entry(&mut entry)?;
        // Whatever the entry did not read is skipped by the parser; read it here so that it
        // does not count as metadata.
        io::copy(&mut entry, &mut io::sink()).map_err(|e| meter.error(dest, e))?;
    }
    unpacker.finish()?;
    Ok(unpacker.done)
}

#[derive(Default)]
struct MeterState {
    metadata: Cell<bool>,
    used: Cell<usize>,
    over: Cell<bool>,
    source_failed: Cell<bool>,
}

impl MeterState {
    fn start(&self) {
        self.used.set(0);
        self.metadata.set(true);
    }

    fn stop(&self) {
        self.metadata.set(false);
    }

    fn error(&self, dest: &str, e: io::Error) -> Error {
        if self.over.get() {
            Error::Invalid(format!(
                "the upload to {dest} has an entry with over {MAX_ENTRY_METADATA} bytes of tar \
                 headers (long names or PAX records); refusing it"
            ))
        } else if self.source_failed.get() {
            Error::io(format!("receiving the upload to {dest}"), e)
        } else {
            Error::Invalid(format!(
                "the upload to {dest} is not a valid tar stream: {e}"
            ))
        }
    }
}

struct Meter<R> {
    inner: R,
    state: Rc<MeterState>,
}

impl<R: Read> Read for Meter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| {
            self.state.source_failed.set(true);
        })?;
        if self.state.metadata.get() {
            let used = self.state.used.get() + n;
            self.state.used.set(used);
            if used > MAX_ENTRY_METADATA {
                self.state.over.set(true);
                return Err(io::Error::other("tar metadata over the limit"));
            }
        }
        Ok(n)
    }
}

fn open_or_create_dest(root: &BoxRoot, dest: &str) -> Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut prefix = String::new();
    for comp in dest.split('/').filter(|c| !c.is_empty() && *c != ".") {
        prefix.push('/');
        prefix.push_str(comp);
        match root.open_in(&prefix, flags, Mode::empty()) {
            Ok(_) => continue,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(dest_error(dest, &prefix, e)),
        }
        let parent = prefix.rsplit_once('/').map_or("", |(p, _)| p);
        let parent_fd = root
            .open_in(parent, flags, Mode::empty())
            .map_err(|e| dest_error(dest, parent, e))?;
        match rustix::fs::mkdirat(&parent_fd, comp, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(dest_error(dest, &prefix, e)),
        }
    }
    root.open_in(dest, flags, Mode::empty())
        .map_err(|e| dest_error(dest, dest, e))
}

fn dest_error(dest: &str, at: &str, e: Errno) -> Error {
    match e {
        Errno::NOTDIR => Error::Invalid(format!(
            "upload destination {dest}: {at} exists in the box and is not a directory"
        )),
        e => Error::io(format!("upload destination {dest}: {at}"), e.into()),
    }
}

struct Unpacker<'a> {
    dest: &'a str,
    dest_fd: OwnedFd,
    as_root: bool,
    pending: Vec<(Vec<u8>, u32, u64)>,
    pending_bytes: usize,
    done: Unpacked,
}

/// An entry's metadata, as it will be applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let comps = components(&raw_path, &shown)?;
        let kind = entry.header().entry_type();
        let Some((name, parents)) = comps.split_last() else {
            // The destination itself (`./`): it exists already.
            return Ok(());
        };
        let header = entry.header();
        let field = |r: io::Result<u64>, what: &str| {
            r.ok()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| Error::Invalid(format!("entry {shown}: bad {what} field")))
        };
        let meta = Meta {
            mode: field(header.mode().map(u64::from), "mode")? & 0o7777,
            uid: field(header.uid(), "uid")?,
            gid: field(header.gid(), "gid")?,
            mtime: header.mtime().unwrap_or(0),
        };
        let parent = self.parent(parents, &shown)?;
        let name = *name;
        match kind {
            EntryType::Directory => {
                self.directory(&parent, name, &comps, &meta, &shown)?;
                self.done.entries += 1;
                return Ok(());
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(&parent, name, &shown)?;
                let fd = rustix::fs::openat(
                    &parent,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.failed(&shown, "creating", e))?;
                let mut file = std::fs::File::from(fd);
                let n = io::copy(entry, &mut file).map_err(|e| {
                    Error::io(format!("upload to {}: writing {shown}", self.dest), e)
                })?;
                self.done.bytes += n;
                self.apply(file.as_fd(), &meta, &shown)?;
            }
            EntryType::Symlink => {
                let target = link_target(entry, &shown)?;
                self.clear(&parent, name, &shown)?;
                rustix::fs::symlinkat(target.as_slice(), &parent, name)
                    .map_err(|e| self.failed(&shown, "creating the symlink", e))?;
                self.apply_nofollow(&parent, name, &meta, &shown)?;
            }
            EntryType::Link => {
                let target = link_target(entry, &shown)?;
                let target_comps = components(&target, &shown)?;
                let Some((target_name, target_parents)) = target_comps.split_last() else {
                    return Err(Error::Invalid(format!(
                        "entry {shown}: a hard link to the upload directory itself"
                    )));
                };
                let target_parent = self.lookup(target_parents, &shown)?;
                self.clear(&parent, name, &shown)?;
                rustix::fs::linkat(
                    &target_parent,
                    *target_name,
                    &parent,
                    name,
                    AtFlags::empty(),
                )
                .map_err(|e| self.failed(&shown, "creating the hard link", e))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                self.clear(&parent, name, &shown)?;
                rustix::fs::mknodat(
                    &parent,
                    name,
                    file_type,
                    Mode::from_bits_truncate(0o600),
                    dev,
                )
                .map_err(|e| self.failed(&shown, "creating the special file", e))?;
                self.apply_nofollow(&parent, name, &meta, &shown)?;
            }
            _ => {
                self.done.skipped += 1;
                return Ok(());
            }
        }
        self.done.entries += 1;
        Ok(())
    }

    fn failed(&self, shown: &str, what: &str, e: Errno) -> Error {
        match e {
            Errno::PERM if !self.as_root => Error::Denied(format!(
                "upload to {}: {what} {shown}: not permitted (the agent does not run as root)",
                self.dest
            )),
            e => Error::io(format!("upload to {}: {what} {shown}", self.dest), e.into()),
        }
    }

    /// Opens the directory `comps` below the destination, creating missing ones.
    fn parent(&self, comps: &[&[u8]], shown: &str) -> Result<OwnedFd> {
        match self.beneath(comps) {
            Err(Errno::NOENT) => {}
            other => return other.map_err(|e| self.escape_or_io(e, shown)),
        }
        let mut dir = self.beneath(&[]).map_err(|e| self.escape_or_io(e, shown))?;
        for (i, comp) in comps.iter().enumerate() {
            match rustix::fs::mkdirat(&dir, *comp, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(self.failed(shown, "creating a directory for", e)),
            }
            dir = self
                .beneath(&comps[..=i])
                .map_err(|e| self.escape_or_io(e, shown))?;
        }
        Ok(dir)
    }

    /// Opens the existing directory `comps` below the destination.
    fn lookup(&self, comps: &[&[u8]], shown: &str) -> Result<OwnedFd> {
        self.beneath(comps).map_err(|e| self.escape_or_io(e, shown))
    }

    fn beneath(&self, comps: &[&[u8]]) -> rustix::io::Result<OwnedFd> {
        let joined = if comps.is_empty() {
            b".".to_vec()
        } else {
            comps.join(&b'/')
        };
        rustix::fs::openat2(
            &self.dest_fd,
            joined.as_slice(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
    }

    fn escape_or_io(&self, e: Errno, shown: &str) -> Error {
        match e {
            Errno::XDEV | Errno::LOOP => Error::Invalid(format!(
                "upload to {}: entry {shown} would be written outside the destination through a \
                 symlink; refusing it",
                self.dest
            )),
            Errno::NOTDIR => Error::Invalid(format!(
                "upload to {}: entry {shown}: a component of its directory is not a directory",
                self.dest
            )),
            e => Error::io(format!("upload to {}: entry {shown}", self.dest), e.into()),
        }
    }

    /// Removes a non-directory at `name` so an entry can take its place.
    fn clear(&self, parent: &OwnedFd, name: &[u8], shown: &str) -> Result<()> {
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.failed(shown, "inspecting", e)),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                Err(Error::Invalid(format!(
                    "upload to {}: entry {shown} is not a directory but the box has a directory \
                     there; remove it first",
                    self.dest
                )))
            }
            Ok(_) => rustix::fs::unlinkat(parent, name, AtFlags::empty())
                .map_err(|e| self.failed(shown, "replacing", e)),
        }
    }

    fn directory(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        comps: &[&[u8]],
        meta: &Meta,
        shown: &str,
    ) -> Result<()> {
        match rustix::fs::mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.failed(shown, "inspecting", e))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    self.clear(parent, name, shown)?;
                    rustix::fs::mkdirat(parent, name, Mode::from_bits_truncate(0o700))
                        .map_err(|e| self.failed(shown, "creating the directory", e))?;
                }
            }
            Err(e) => return Err(self.failed(shown, "creating the directory", e)),
        }
        let fd = self.open_dir(parent, name, shown)?;
        if self.as_root {
            rustix::fs::fchown(&fd, Some(uid(meta.uid)), Some(gid(meta.gid)))
                .map_err(|e| self.failed(shown, "setting the owner of", e))?;
        }
        // Until the final pass, keep the directory writable and searchable by its owner so its
        // entries can be created even when the archive gives it a read-only mode.
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(meta.mode | 0o700))
            .map_err(|e| self.failed(shown, "setting the mode of", e))?;
        let rel = comps.join(&b'/');
        if self.pending_bytes + rel.len() <= MAX_PENDING_DIR_BYTES {
            self.pending_bytes += rel.len();
            self.pending.push((rel, meta.mode, meta.mtime));
        }
        Ok(())
    }

    fn open_dir(&self, parent: &OwnedFd, name: &[u8], shown: &str) -> Result<OwnedFd> {
        rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.failed(shown, "opening the directory", e))
    }

    fn apply(&self, fd: std::os::fd::BorrowedFd<'_>, meta: &Meta, shown: &str) -> Result<()> {
        if self.as_root {
            rustix::fs::fchown(fd, Some(uid(meta.uid)), Some(gid(meta.gid)))
                .map_err(|e| self.failed(shown, "setting the owner of", e))?;
        }
        // After the owner: chown clears the set-id bits.
        rustix::fs::fchmod(fd, Mode::from_bits_truncate(meta.mode))
            .map_err(|e| self.failed(shown, "setting the mode of", e))?;
        rustix::fs::futimens(fd, &times(meta.mtime))
            .map_err(|e| self.failed(shown, "setting the time of", e))
    }

    fn apply_nofollow(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<()> {
        if self.as_root {
            rustix::fs::chownat(
                parent,
                name,
                Some(uid(meta.uid)),
                Some(gid(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| self.failed(shown, "setting the owner of", e))?;
        }
        let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.failed(shown, "inspecting", e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
            // Linux has no lchmod; a special file is never followed by chmod anyway.
            rustix::fs::chmodat(
                parent,
                name,
                Mode::from_bits_truncate(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|e| self.failed(shown, "setting the mode of", e))?;
        }
        rustix::fs::utimensat(parent, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.failed(shown, "setting the time of", e))
    }

    /// Restores directory modes and times, deepest first, now that their contents exist.
    fn finish(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        for (rel, mode, mtime) in pending.iter().rev() {
            let shown = String::from_utf8_lossy(rel);
            let fd = rustix::fs::openat2(
                &self.dest_fd,
                rel.as_slice(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            )
            .map_err(|e| self.escape_or_io(e, &shown))?;
            rustix::fs::fchmod(&fd, Mode::from_bits_truncate(*mode))
                .map_err(|e| self.failed(&shown, "setting the mode of", e))?;
            rustix::fs::futimens(&fd, &times(*mtime))
                .map_err(|e| self.failed(&shown, "setting the time of", e))?;
        }
        Ok(())
    }
}

/// An entry name's components, with `.` and empty ones dropped and `..` rejected.
fn components<'p>(raw: &'p [u8], shown: &str) -> Result<Vec<&'p [u8]>> {
    if raw.len() > MAX_ENTRY_PATH_LEN {
        return Err(Error::Invalid(format!(
            "entry {}…: its name is over {MAX_ENTRY_PATH_LEN} bytes",
            shown.chars().take(64).collect::<String>()
        )));
    }
    if raw.contains(&0) {
        return Err(Error::Invalid(format!(
            "entry {shown:?}: its name has a NUL byte"
        )));
    }
    let mut out = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                return Err(Error::Invalid(format!(
                    "entry {shown}: a name with `..` could leave the upload directory; refusing it"
                )));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>, shown: &str) -> Result<Vec<u8>> {
    let target = entry
        .link_name_bytes()
        .ok_or_else(|| Error::Invalid(format!("entry {shown}: a link without a target")))?;
    if target.len() > MAX_ENTRY_PATH_LEN || target.is_empty() || target.contains(&0) {
        return Err(Error::Invalid(format!(
            "entry {shown}: its link target is empty, has a NUL byte or is over \
             {MAX_ENTRY_PATH_LEN} bytes"
        )));
    }
    Ok(target.into_owned())
}

fn uid(raw: u32) -> Uid {
    Uid::from_raw(raw)
}

fn gid(raw: u32) -> Gid {
    Gid::from_raw(raw)
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    /// A tar archive written header by header, so entries can carry names a well-behaved
    /// builder refuses (`..`, absolute paths).
    #[derive(Default)]
    struct RawTar(Vec<u8>);

    impl RawTar {
        fn entry(
            &mut self,
            name: &[u8],
            kind: EntryType,
            link: &[u8],
            data: &[u8],
            mode: u32,
        ) -> &mut Self {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_mtime(1_000_000);
            h.set_uid(rustix::process::geteuid().as_raw().into());
            h.set_gid(rustix::process::getegid().as_raw().into());
            h.set_cksum();
            self.0.extend_from_slice(h.as_bytes());
            self.0.extend_from_slice(data);
            self.0.resize(self.0.len().next_multiple_of(512), 0);
            self
        }

        fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
            self.entry(name.as_bytes(), EntryType::Regular, b"", data, 0o644)
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = self.0.clone();
            out.extend_from_slice(&[0; 1024]);
            out
        }
    }

    fn setup() -> (tempfile::TempDir, BoxRoot) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("box")).unwrap();
        let root = BoxRoot::open(&tmp.path().join("box"), false).unwrap();
        (tmp, root)
    }

    #[test]
    fn plain_entries_land_under_the_destination() {
        let (tmp, root) = setup();
        let mut tar = RawTar::default();
        tar.entry(b"./", EntryType::Directory, b"", b"", 0o755)
            .entry(b"d/", EntryType::Directory, b"", b"", 0o500)
            .file("d/f", b"hello")
            .file("/abs/g", b"abs")
            .entry(b"d/link", EntryType::Symlink, b"/etc/passwd", b"", 0o777)
            .entry(b"d/hard", EntryType::Link, b"d/f", b"", 0o644)
            .entry(b"fifo", EntryType::Fifo, b"", b"", 0o640)
            .entry(b"x", EntryType::XGlobalHeader, b"", b"", 0o644);
        let done = unpack(&root, "/up/here", tar.bytes().as_slice()).unwrap();
        assert_eq!((done.entries, done.bytes, done.skipped), (6, 8, 1));
        let dest = tmp.path().join("box/up/here");
        assert_eq!(std::fs::read(dest.join("d/f")).unwrap(), b"hello");
        assert_eq!(std::fs::read(dest.join("abs/g")).unwrap(), b"abs");
        let d = std::fs::metadata(dest.join("d")).unwrap();
        assert_eq!(d.permissions().mode() & 0o7777, 0o500);
        assert_eq!(d.mtime(), 1_000_000);
        assert_eq!(
            std::fs::read_link(dest.join("d/link")).unwrap(),
            Path::new("/etc/passwd")
        );
        let (f, h) = (
            std::fs::metadata(dest.join("d/f")).unwrap(),
            std::fs::metadata(dest.join("d/hard")).unwrap(),
        );
        assert_eq!(f.ino(), h.ino());
        assert_eq!(f.mode() & 0o7777, 0o644);
        let fifo = std::fs::symlink_metadata(dest.join("fifo")).unwrap();
        assert_eq!(fifo.mode() & 0o170000, 0o010000);
        assert_eq!(fifo.mode() & 0o7777, 0o640);
    }

    #[test]
    fn entries_that_escape_are_refused() {
        let (tmp, root) = setup();
        std::fs::create_dir(tmp.path().join("box/dest")).unwrap();
        std::os::unix::fs::symlink("/", tmp.path().join("box/dest/up")).unwrap();
        std::os::unix::fs::symlink("../..", tmp.path().join("box/dest/rel")).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (RawTar::default().file("../evil", b"x").bytes(), "`..`"),
            (RawTar::default().file("a/../../evil", b"x").bytes(), "`..`"),
            (RawTar::default().file("up/evil", b"x").bytes(), "outside"),
            (RawTar::default().file("rel/evil", b"x").bytes(), "outside"),
            (
                RawTar::default()
                    .entry(b"l", EntryType::Symlink, b"/", b"", 0o777)
                    .file("l/evil", b"x")
                    .bytes(),
                "outside",
            ),
            (
                RawTar::default()
                    .entry(b"h", EntryType::Link, b"../../outside", b"", 0o644)
                    .bytes(),
                "`..`",
            ),
            (
                RawTar::default()
                    .entry(b"h", EntryType::Link, b"up/etc", b"", 0o644)
                    .bytes(),
                "outside",
            ),
        ];
        for (i, (bytes, needle)) in cases.into_iter().enumerate() {
            let err = unpack(&root, "/dest", bytes.as_slice()).unwrap_err();
            assert_eq!(err.kind(), protocol::ErrorKind::Invalid, "case {i}: {err}");
            assert!(err.to_string().contains(needle), "case {i}: {err}");
        }
        assert!(!tmp.path().join("evil").exists());
        assert!(!tmp.path().join("box/evil").exists());
    }

    #[test]
    fn replacing_and_merging() {
        let (tmp, root) = setup();
        let dest = tmp.path().join("box/dest");
        std::fs::create_dir_all(dest.join("dir/keep")).unwrap();
        std::fs::write(dest.join("file"), "old").unwrap();
        let mut tar = RawTar::default();
        tar.file("file", b"new").file("dir/added", b"a");
        unpack(&root, "/dest", tar.bytes().as_slice()).unwrap();
        assert_eq!(std::fs::read(dest.join("file")).unwrap(), b"new");
        assert!(dest.join("dir/keep").is_dir());
        assert!(dest.join("dir/added").is_file());
        let err = unpack(
            &root,
            "/dest",
            RawTar::default().file("dir", b"x").bytes().as_slice(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        std::fs::write(tmp.path().join("box/plainfile"), "").unwrap();
        let err = unpack(
            &root,
            "/plainfile/sub",
            RawTar::default().bytes().as_slice(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn broken_and_oversized_streams_are_errors() {
        let (_tmp, root) = setup();
        let mut bytes = RawTar::default().file("f", &[7; 5000]).bytes();
        bytes.truncate(2000);
        let err = unpack(&root, "/t", bytes.as_slice()).unwrap_err();
        assert_eq!(err.kind(), protocol::ErrorKind::Invalid, "{err}");
        let garbage = vec![0x55u8; 4096];
        let err = unpack(&root, "/t", garbage.as_slice()).unwrap_err();
        assert!(err.to_string().contains("not a valid tar"), "{err}");
        let long = vec![b'n'; MAX_ENTRY_METADATA + 10];
        let mut tar = RawTar::default();
        tar.entry(b"././@LongLink", EntryType::GNULongName, b"", &long, 0o644)
            .file("f", b"x");
        let err = unpack(&root, "/t", tar.bytes().as_slice()).unwrap_err();
        assert!(err.to_string().contains("tar headers"), "{err}");
    }
}
