//! Downloads: a file or directory of the box written as a tar stream.
//!
//! The archive's entries are named after the path's last component (downloading `/etc` gives
//! `etc/`, `etc/hosts`, …; downloading `/` gives `./…`), as `docker cp` does. Intermediate
//! symlinks of the path are followed inside the box; the last component is archived as it is
//! (a symlink stays a symlink). The walk never follows symlinks and opens every entry relative
//! to its directory's descriptor, so a box process renaming things meanwhile cannot redirect it
//! outside the tree. Modes, owners, times, symlinks, hard links (within the download), fifos
//! and device nodes are kept; sockets are skipped (tar cannot hold them).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use tar::{EntryType, Header};

use crate::error::{Error, Result};
use crate::root::BoxRoot;

/// The deepest directory nesting walked: each level holds a directory descriptor open, and
/// the agent's descriptor limit (1024 by default) must stay well clear.
pub const MAX_DEPTH: usize = 256;

/// The most multiply-linked inodes remembered to emit hard links; past it, further links are
/// archived as separate copies (correct, only bigger). Bounds memory for hostile trees.
pub const MAX_TRACKED_LINKS: usize = 65536;

/// What a download sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    /// Entries archived.
    pub entries: u64,
    /// Bytes of file content archived.
    pub bytes: u64,
    /// Sockets skipped.
    pub skipped: u64,
}

/// Writes `src` (a path of the box) to `out` as a tar stream.
pub fn pack(root: &BoxRoot, src: &str, out: impl Write) -> Result<Packed> {
    let comps: Vec<&str> = src
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let (parent_path, name) = match comps.split_last() {
        None => (String::from("/"), "."),
        Some((&"..", _)) => {
            return Err(Error::Invalid(format!(
                "download {src}: the path must end in a file or directory name, not `..`"
            )));
        }
        Some((name, parents)) => (format!("/{}", parents.join("/")), *name),
    };
    let parent = root
        .open_in(
            &parent_path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| not_found_or_io(src, e))?;
    let mut packer = Packer {
        src,
        builder: tar::Builder::new(out),
        links: HashMap::new(),
        done: Packed::default(),
    };
    let st = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| not_found_or_io(src, e))?;
    packer.entry(&parent, name.as_bytes(), name.as_bytes(), &st, 0)?;
    let done = packer.done;
    packer
        .builder
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|e| Error::io("sending the download of", src, e))?;
    Ok(done)
}

fn not_found_or_io(src: &str, e: Errno) -> Error {
    match e {
        Errno::NOENT | Errno::NOTDIR => Error::NotFound(format!(
            "download {src}: no such file or directory in the box"
        )),
        e => Error::io("downloading", src, e.into()),
    }
}

struct Packer<'a, W: Write> {
    src: &'a str,
    builder: tar::Builder<W>,
    links: HashMap<(u64, u64), Vec<u8>>,
    done: Packed,
}

impl<W: Write> Packer<'_, W> {
    fn io(&self, op: &'static str, archived: &[u8], e: impl Into<io::Error>) -> Error {
        Error::io(
            op,
            format_args!(
                "{} (downloading {})",
                String::from_utf8_lossy(archived),
                self.src
            ),
            e.into(),
        )
    }

    /// Archives `name` of directory `dir` as `archived`, and its contents if it is a directory.
    fn entry(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        archived: &[u8],
        st: &Stat,
        depth: usize,
    ) -> Result<()> {
        let kind = FileType::from_raw_mode(st.st_mode);
        let mut header = Header::new_gnu();
        header.set_mode(st.st_mode & 0o7777);
        header.set_uid(u64::from(st.st_uid));
        header.set_gid(u64::from(st.st_gid));
        header.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        header.set_size(0);
        let path = Path::new(OsStr::from_bytes(archived));
        let io_err = |this: &Self, e: io::Error| this.io("archiving", archived, e);
        match kind {
            FileType::Directory => {
                header.set_entry_type(EntryType::Directory);
                self.builder
                    .append_data(&mut header, path, io::empty())
                    .map_err(|e| io_err(self, e))?;
                self.done.entries += 1;
                self.directory(dir, name, archived, depth)?;
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        let first = first.clone();
                        header.set_entry_type(EntryType::Link);
                        self.builder
                            .append_link(&mut header, path, Path::new(OsStr::from_bytes(&first)))
                            .map_err(|e| io_err(self, e))?;
                        self.done.entries += 1;
                        return Ok(());
                    }
                    if self.links.len() < MAX_TRACKED_LINKS {
                        self.links.insert(key, archived.to_vec());
                    }
                }
                // O_NONBLOCK: if a box process swapped the file for a fifo, do not hang on it.
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.io("opening", archived, e))?;
                let now = rustix::fs::fstat(&fd).map_err(|e| self.io("inspecting", archived, e))?;
                if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile {
                    return Err(Error::Invalid(format!(
                        "download {}: {} changed type while it was being archived",
                        self.src,
                        String::from_utf8_lossy(archived)
                    )));
                }
                let size = u64::try_from(now.st_size).unwrap_or(0);
                header.set_entry_type(EntryType::Regular);
                header.set_size(size);
                // A file that shrinks meanwhile is padded with zeros and one that grows is cut,
                // so the entry always holds exactly the size in its header.
                let data = std::fs::File::from(fd)
                    .take(size)
                    .chain(io::repeat(0))
                    .take(size);
                self.builder
                    .append_data(&mut header, path, data)
                    .map_err(|e| io_err(self, e))?;
                self.done.entries += 1;
                self.done.bytes += size;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| self.io("reading the link", archived, e))?;
                header.set_entry_type(EntryType::Symlink);
                self.builder
                    .append_link(
                        &mut header,
                        path,
                        Path::new(OsStr::from_bytes(target.as_bytes())),
                    )
                    .map_err(|e| io_err(self, e))?;
                self.done.entries += 1;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                header.set_entry_type(match kind {
                    FileType::CharacterDevice => EntryType::Char,
                    FileType::BlockDevice => EntryType::Block,
                    _ => EntryType::Fifo,
                });
                if kind != FileType::Fifo {
                    header
                        .set_device_major(rustix::fs::major(st.st_rdev))
                        .map_err(|e| io_err(self, e))?;
                    header
                        .set_device_minor(rustix::fs::minor(st.st_rdev))
                        .map_err(|e| io_err(self, e))?;
                }
                self.builder
                    .append_data(&mut header, path, io::empty())
                    .map_err(|e| io_err(self, e))?;
                self.done.entries += 1;
            }
            _ => self.done.skipped += 1,
        }
        Ok(())
    }

    fn directory(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        archived: &[u8],
        depth: usize,
    ) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(Error::Invalid(format!(
                "download {}: {} is nested over {MAX_DEPTH} directories deep",
                self.src,
                String::from_utf8_lossy(archived)
            )));
        }
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io("opening", archived, e))?;
        let mut dir = Dir::read_from(&fd).map_err(|e| self.io("listing", archived, e))?;
        while let Some(item) = dir.read() {
            let item = item.map_err(|e| self.io("listing", archived, e))?;
            let child = item.file_name().to_bytes();
            if child == b"." || child == b".." {
                continue;
            }
            let mut child_archived = archived.to_vec();
            child_archived.push(b'/');
            child_archived.extend_from_slice(child);
            let st = match rustix::fs::statat(&fd, child, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Deleted since it was listed: a live box changes under us; skip it.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(self.io("inspecting", &child_archived, e)),
            };
            self.entry(&fd, child, &child_archived, &st, depth + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::unpack;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    fn tree(base: &Path) {
        std::fs::create_dir_all(base.join("src/sub/deeper")).unwrap();
        std::fs::write(base.join("src/a.txt"), "alpha").unwrap();
        std::fs::write(base.join("src/sub/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            base.join("src/sub/run.sh"),
            PermissionsExt::from_mode(0o751),
        )
        .unwrap();
        std::fs::write(base.join("src/sub/deeper/big"), vec![9u8; 300_000]).unwrap();
        std::fs::hard_link(base.join("src/a.txt"), base.join("src/sub/a-again")).unwrap();
        symlink("../a.txt", base.join("src/sub/link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            base.join("src/pipe"),
            FileType::Fifo,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        std::fs::set_permissions(
            base.join("src/sub/deeper"),
            PermissionsExt::from_mode(0o555),
        )
        .unwrap();
        std::fs::set_permissions(base.join("src/sub"), PermissionsExt::from_mode(0o710)).unwrap();
    }

    fn listing(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                let content = if m.file_type().is_symlink() {
                    std::fs::read_link(&p).unwrap().into_os_string().into_vec()
                } else if m.is_file() {
                    std::fs::read(&p).unwrap()
                } else {
                    Vec::new()
                };
                if m.is_dir() {
                    stack.push(p.clone());
                }
                out.push((rel, m.mode(), content));
            }
        }
        out.sort();
        out
    }

    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn round_trip_keeps_types_modes_links_and_times() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        tree(r);
        let root = BoxRoot::open(r, false).unwrap();
        let mut archive = Vec::new();
        let packed = pack(&root, "/src", &mut archive).unwrap();
        assert_eq!(packed.bytes, 5 + 10 + 300_000);
        assert_eq!(packed.entries, 9);
        // The archive names start with the path's last component.
        let mut names: Vec<String> = tar::Archive::new(archive.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names[0], "src");
        unpack(&root, "/copy", archive.as_slice()).unwrap();
        assert_eq!(listing(&r.join("src")), listing(&r.join("copy/src")));
        let (a, b) = (
            std::fs::metadata(r.join("copy/src/a.txt")).unwrap(),
            std::fs::metadata(r.join("copy/src/sub/a-again")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino(), "hard links stay hard links");
        assert_eq!(
            std::fs::metadata(r.join("src/sub")).unwrap().mtime(),
            std::fs::metadata(r.join("copy/src/sub")).unwrap().mtime()
        );
        // Make the tree removable again.
        for d in ["src/sub/deeper", "copy/src/sub/deeper"] {
            std::fs::set_permissions(r.join(d), PermissionsExt::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn single_files_symlinks_and_missing_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        symlink("/etc", r.join("link")).unwrap();
        let root = BoxRoot::open(r, false).unwrap();
        let mut archive = Vec::new();
        pack(&root, "/link/hosts", &mut archive).unwrap();
        let mut ar = tar::Archive::new(archive.as_slice());
        let mut entries = ar.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap(), Path::new("hosts"));
        let mut text = String::new();
        e.read_to_string(&mut text).unwrap();
        assert_eq!(text, "127.0.0.1 localhost\n");
        drop(e);
        assert!(entries.next().is_none());

        let mut archive = Vec::new();
        pack(&root, "/link", &mut archive).unwrap();
        let mut ar = tar::Archive::new(archive.as_slice());
        let e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().entry_type(), EntryType::Symlink);

        let err = pack(&root, "/nope/x", Vec::new()).unwrap_err();
        assert_eq!(err.kind(), protocol::ErrorKind::NotFound, "{err}");
        let err = pack(&root, "/etc/..", Vec::new()).unwrap_err();
        assert_eq!(err.kind(), protocol::ErrorKind::Invalid, "{err}");
    }
}
