//! The unpacker: each entry created beneath the destination's descriptor, as the policy says.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use tar::EntryType;

use crate::error::{Error, Limit, Op, Result};
use crate::meter::{Meter, MeterState};
use crate::policy::Policy;
use crate::{MAX_PATH_LEN, MAX_PENDING_DIR_BYTES};

/// Most names of skipped special files a [`Report`] keeps: enough to tell a user what was
/// left out, while a hostile archive of millions of device nodes cannot grow the report.
pub const MAX_REPORTED_NAMES: usize = 64;

/// Bytes of file content copied per read and write.
const COPY_BUF_SIZE: usize = 64 * 1024;

/// What an unpacking did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Entries created (the destination itself not counted).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries not created: kinds that cannot be unpacked (e.g. GNU volume labels), and the
    /// special files the policy refuses.
    pub skipped: u64,
    /// Of [`Report::skipped`], the device nodes and FIFOs the policy refused (and hard links
    /// to them).
    pub specials_skipped: u64,
    /// The names of the first [`MAX_REPORTED_NAMES`] of those, relative to the destination,
    /// decoded lossily as UTF-8. They come from the archive: quote them when printing.
    pub special_names: Vec<String>,
}

/// Unpacks the tar stream `input` beneath the directory `dir` (any descriptor of it, `O_PATH`
/// included), as `policy` says.
///
/// Fails at the first entry that cannot be unpacked; what was created before it stays.
pub fn unpack(dir: impl AsFd, input: impl Read, policy: &Policy) -> Result<Report> {
    let meter = Rc::new(MeterState::default());
    let mut archive = tar::Archive::new(Meter::new(input, meter.clone()));
    let mut entries = archive.entries().map_err(|e| meter.error(e))?;
    let mut unpacker = Unpacker {
        dest: dir.as_fd(),
        policy,
        meter: &meter,
        pending: Vec::new(),
        pending_bytes: 0,
        seen: 0,
        buf: Vec::new(),
        done: Report::default(),
    };
    loop {
        meter.start();
        let next = entries.next();
        meter.stop();
        let mut entry = match next {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(e)) => return Err(meter.error(e)),
        };
        unpacker.seen += 1;
        if unpacker.seen > policy.max_entries {
            return Err(Error::Limit {
                limit: Limit::Entries,
                max: policy.max_entries,
            });
        }
        unpacker.entry(&mut entry)?;
        // Whatever the entry did not read is skipped by the parser; read it here so that it
        // does not count as metadata.
        io::copy(&mut entry, &mut io::sink()).map_err(|e| meter.error(e))?;
    }
    unpacker.finish()?;
    Ok(unpacker.done)
}

/// [`unpack`] beneath the existing directory at `dir` (the caller's own path: symlinks in
/// it are followed).
pub fn unpack_into(dir: &Path, input: impl Read, policy: &Policy) -> Result<Report> {
    let fd = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(Op::OpenDir, dir.display().to_string(), e))?;
    unpack(&fd, input, policy)
}

struct Unpacker<'a> {
    dest: BorrowedFd<'a>,
    policy: &'a Policy,
    meter: &'a MeterState,
    /// Directories whose mode and time the final pass sets: path, mode, mtime.
    pending: Vec<(Vec<u8>, u32, u64)>,
    pending_bytes: usize,
    /// Entries the parser has yielded.
    seen: u64,
    buf: Vec<u8>,
    done: Report,
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
        let special = matches!(kind, EntryType::Char | EntryType::Block | EntryType::Fifo);
        let supported = special
            || matches!(
                kind,
                EntryType::Directory
                    | EntryType::Regular
                    | EntryType::Continuous
                    | EntryType::GNUSparse
                    | EntryType::Symlink
                    | EntryType::Link
            );
        if !supported {
            self.done.skipped += 1;
            return Ok(());
        }
        if special && !self.policy.special_files {
            self.skip_special(&comps);
            return Ok(());
        }
        let header = entry.header();
        let field = |r: io::Result<u64>, what: &str| {
            r.ok()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| Error::Invalid(format!("entry {shown}: bad {what} field")))
        };
        let meta = Meta {
            mode: self
                .policy
                .mode(field(header.mode().map(u64::from), "mode")?),
            uid: field(header.uid(), "uid")?,
            gid: field(header.gid(), "gid")?,
            mtime: header.mtime().unwrap_or(0),
        };
        let parent = self.parent(parents, &shown)?;
        let name = *name;
        match kind {
            EntryType::Directory => self.directory(&parent, name, &comps, &meta, &shown)?,
            EntryType::Symlink => {
                let target = link_target(entry, &shown)?;
                self.clear(&parent, name, &shown)?;
                rustix::fs::symlinkat(target.as_slice(), &parent, name)
                    .map_err(|e| Error::io(Op::CreateSymlink, &shown, e))?;
                self.apply_nofollow(&parent, name, &meta, &shown)?;
            }
            EntryType::Link => {
                let target = link_target(entry, &shown)?;
                if !self.hard_link(&parent, &comps, &target, &shown)? {
                    return Ok(());
                }
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
                .map_err(|e| Error::io(Op::CreateNode, &shown, e))?;
                self.apply_nofollow(&parent, name, &meta, &shown)?;
            }
            _ => self.file(entry, &parent, name, &meta, &shown)?,
        }
        self.done.entries += 1;
        Ok(())
    }

    fn skip_special(&mut self, comps: &[&[u8]]) {
        self.done.skipped += 1;
        self.done.specials_skipped += 1;
        if self.done.special_names.len() < MAX_REPORTED_NAMES {
            let name = String::from_utf8_lossy(&comps.join(&b'/')).into_owned();
            self.done.special_names.push(name);
        }
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<()> {
        let max = self.policy.max_bytes;
        let over = Error::Limit {
            limit: Limit::Bytes,
            max,
        };
        // The header's size first, so an entry that would not fit fails before it is written.
        if entry.size() > max.saturating_sub(self.done.bytes) {
            return Err(over);
        }
        self.clear(parent, name, shown)?;
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| Error::io(Op::CreateFile, shown, e))?;
        let mut file = std::fs::File::from(fd);
        self.buf.resize(COPY_BUF_SIZE, 0);
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.meter.error(e)),
            };
            // Counted as read too: a sparse entry's content can be far larger than its size.
            if n as u64 > max.saturating_sub(self.done.bytes) {
                return Err(over);
            }
            file.write_all(&self.buf[..n]).map_err(|e| Error::Io {
                op: Op::Write,
                path: shown.to_owned(),
                source: e,
            })?;
            self.done.bytes += n as u64;
        }
        self.apply(file.as_fd(), meta, shown)
    }

    /// Links `name` to the earlier entry `target`; `false` when the link was skipped because
    /// its target is a special file the policy refuses.
    fn hard_link(
        &mut self,
        parent: &OwnedFd,
        comps: &[&[u8]],
        target: &[u8],
        shown: &str,
    ) -> Result<bool> {
        let Some(name) = comps.last() else {
            return Ok(false);
        };
        let target_comps = components(target, shown)?;
        let Some((target_name, target_parents)) = target_comps.split_last() else {
            return Err(Error::Invalid(format!(
                "entry {shown}: a hard link to the destination directory itself"
            )));
        };
        let target_parent = self.lookup(target_parents, shown)?;
        if !self.policy.special_files {
            let special =
                match rustix::fs::statat(&target_parent, *target_name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => !matches!(
                        FileType::from_raw_mode(st.st_mode),
                        FileType::RegularFile | FileType::Directory | FileType::Symlink
                    ),
                    // A link to a special file that was skipped: skipped too.
                    Err(Errno::NOENT) => {
                        let joined =
                            String::from_utf8_lossy(&target_comps.join(&b'/')).into_owned();
                        self.done.special_names.contains(&joined)
                    }
                    Err(_) => false,
                };
            if special {
                self.skip_special(comps);
                return Ok(false);
            }
        }
        self.clear(parent, name, shown)?;
        rustix::fs::linkat(
            &target_parent,
            *target_name,
            parent,
            *name,
            AtFlags::empty(),
        )
        .map_err(|e| Error::io(Op::CreateLink, shown, e))?;
        Ok(true)
    }

    /// Opens the directory `comps` below the destination, creating missing ones.
    fn parent(&self, comps: &[&[u8]], shown: &str) -> Result<OwnedFd> {
        match self.beneath(comps) {
            Err(Errno::NOENT) => {}
            other => return other.map_err(|e| escape_or_io(e, shown)),
        }
        let mut dir = self.beneath(&[]).map_err(|e| escape_or_io(e, shown))?;
        for (i, comp) in comps.iter().enumerate() {
            match rustix::fs::mkdirat(&dir, *comp, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(Error::io(Op::CreateDir, shown, e)),
            }
            dir = self
                .beneath(&comps[..=i])
                .map_err(|e| escape_or_io(e, shown))?;
        }
        Ok(dir)
    }

    /// Opens the existing directory `comps` below the destination.
    fn lookup(&self, comps: &[&[u8]], shown: &str) -> Result<OwnedFd> {
        self.beneath(comps).map_err(|e| escape_or_io(e, shown))
    }

    fn beneath(&self, comps: &[&[u8]]) -> rustix::io::Result<OwnedFd> {
        let joined = if comps.is_empty() {
            b".".to_vec()
        } else {
            comps.join(&b'/')
        };
        rustix::fs::openat2(
            self.dest,
            joined.as_slice(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// Removes a non-directory at `name` so an entry can take its place.
    fn clear(&self, parent: &OwnedFd, name: &[u8], shown: &str) -> Result<()> {
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io(Op::Stat, shown, e)),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                Err(Error::Invalid(format!(
                    "entry {shown} is not a directory but the destination has a directory \
                     there; remove it first"
                )))
            }
            Ok(_) => rustix::fs::unlinkat(parent, name, AtFlags::empty())
                .map_err(|e| Error::io(Op::Remove, shown, e)),
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
                    .map_err(|e| Error::io(Op::Stat, shown, e))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    self.clear(parent, name, shown)?;
                    rustix::fs::mkdirat(parent, name, Mode::from_bits_truncate(0o700))
                        .map_err(|e| Error::io(Op::CreateDir, shown, e))?;
                }
            }
            Err(e) => return Err(Error::io(Op::CreateDir, shown, e)),
        }
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(Op::OpenDir, shown, e))?;
        if self.policy.owners {
            rustix::fs::fchown(&fd, Some(uid(meta.uid)), Some(gid(meta.gid)))
                .map_err(|e| Error::io(Op::Chown, shown, e))?;
        }
        // Until the final pass, keep the directory writable and searchable by its owner so its
        // entries can be created even when the archive gives it a read-only mode.
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(meta.mode | 0o700))
            .map_err(|e| Error::io(Op::Chmod, shown, e))?;
        let rel = comps.join(&b'/');
        if self.pending_bytes + rel.len() <= MAX_PENDING_DIR_BYTES {
            self.pending_bytes += rel.len();
            self.pending.push((rel, meta.mode, meta.mtime));
        }
        Ok(())
    }

    fn apply(&self, fd: BorrowedFd<'_>, meta: &Meta, shown: &str) -> Result<()> {
        if self.policy.owners {
            rustix::fs::fchown(fd, Some(uid(meta.uid)), Some(gid(meta.gid)))
                .map_err(|e| Error::io(Op::Chown, shown, e))?;
        }
        // After the owner: chown clears the set-id bits.
        rustix::fs::fchmod(fd, Mode::from_bits_truncate(meta.mode))
            .map_err(|e| Error::io(Op::Chmod, shown, e))?;
        rustix::fs::futimens(fd, &times(meta.mtime)).map_err(|e| Error::io(Op::SetTimes, shown, e))
    }

    fn apply_nofollow(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<()> {
        if self.policy.owners {
            rustix::fs::chownat(
                parent,
                name,
                Some(uid(meta.uid)),
                Some(gid(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Error::io(Op::Chown, shown, e))?;
        }
        let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io(Op::Stat, shown, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
            // Linux has no lchmod; a special file is never followed by chmod anyway.
            rustix::fs::chmodat(
                parent,
                name,
                Mode::from_bits_truncate(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|e| Error::io(Op::Chmod, shown, e))?;
        }
        rustix::fs::utimensat(parent, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io(Op::SetTimes, shown, e))
    }

    /// Restores directory modes and times, deepest first, now that their contents exist.
    fn finish(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        for (rel, mode, mtime) in pending.iter().rev() {
            let shown = String::from_utf8_lossy(rel);
            let fd = rustix::fs::openat2(
                self.dest,
                rel.as_slice(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            )
            .map_err(|e| escape_or_io(e, &shown))?;
            rustix::fs::fchmod(&fd, Mode::from_bits_truncate(*mode))
                .map_err(|e| Error::io(Op::Chmod, &*shown, e))?;
            rustix::fs::futimens(&fd, &times(*mtime))
                .map_err(|e| Error::io(Op::SetTimes, &*shown, e))?;
        }
        Ok(())
    }
}

/// The error for a failed lookup beneath the destination.
fn escape_or_io(e: Errno, shown: &str) -> Error {
    match e {
        Errno::XDEV | Errno::LOOP => Error::Escape {
            entry: shown.to_owned(),
            why: "its directory leads outside the destination through a symlink",
        },
        Errno::NOTDIR => Error::Invalid(format!(
            "entry {shown}: a component of its directory is not a directory"
        )),
        e => Error::io(Op::OpenDir, shown, e),
    }
}

/// An entry name's components, with `.` and empty ones dropped and `..` refused.
fn components<'p>(raw: &'p [u8], shown: &str) -> Result<Vec<&'p [u8]>> {
    if raw.len() > MAX_PATH_LEN {
        return Err(Error::Invalid(format!(
            "entry {}…: its name is over {MAX_PATH_LEN} bytes",
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
                return Err(Error::Escape {
                    entry: shown.to_owned(),
                    why: "a name with `..` could leave the destination",
                });
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
    if target.len() > MAX_PATH_LEN || target.is_empty() || target.contains(&0) {
        return Err(Error::Invalid(format!(
            "entry {shown}: its link target is empty, has a NUL byte or is over \
             {MAX_PATH_LEN} bytes"
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
#[path = "unpack_tests.rs"]
mod tests;
