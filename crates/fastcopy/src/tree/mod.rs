//! Whole trees: [`copy_tree`] walks a source and feeds a [`Copier`]; [`remove_tree`] deletes.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::copier::{Copier, Options};
use crate::error::{Error, Op, Result, at};
use crate::meta::{Kind, Meta};
use crate::report::Report;

/// Non-directories collected before they are copied as one parallel batch. Bounds the walk's
/// memory however many entries a tree has, while keeping batches large enough to spread over
/// all threads.
const BATCH: usize = 4096;

/// A non-directory found by the walk, copied once its directory exists.
struct Pending {
    src: PathBuf,
    dst: PathBuf,
    meta: Meta,
}

/// Copies the tree at `src` into `dst`, merging with what `dst` already holds.
///
/// Existing directories are merged; an existing non-directory at a path is replaced; an existing
/// directory where `src` has a non-directory is removed recursively first; an existing
/// non-directory (a symlink included) where `src` has a directory is replaced by a directory.
/// `exclude(relative_path)` returning true skips that entry and everything below it. `dst`
/// itself is created if missing and gets `src`'s metadata. Symlinks are copied, never followed.
pub fn copy_tree(
    src: &Path,
    dst: &Path,
    opts: &Options,
    exclude: &(dyn Fn(&Path) -> bool + Sync),
) -> Result<Report> {
    copy_tree_with(src, dst, opts, exclude, true)
}

/// [`copy_tree`], with the file copies done on the rayon pool or on the calling thread.
pub(crate) fn copy_tree_with(
    src: &Path,
    dst: &Path,
    opts: &Options,
    exclude: &(dyn Fn(&Path) -> bool + Sync),
    parallel: bool,
) -> Result<Report> {
    let root = Meta::lstat(src)?;
    if root.kind() != Kind::Dir {
        return Err(Error::NotADirectory {
            path: src.to_path_buf(),
        });
    }
    let copier = Copier::new(opts.clone());
    copier.copy_with_meta(src, dst, &root)?;
    // A destination inside the source must not be walked into and copied again.
    let dst_root = Meta::lstat(dst)?;
    let dst_id = (dst_root.dev, dst_root.ino);

    // Directories are created during the walk, parents first; everything else waits in
    // `pending` so that the data copies can run in parallel, a batch at a time.
    let copy_batch = |pending: &mut Vec<Pending>| -> Result<()> {
        let copy = |p: &Pending| copier.copy_with_meta(&p.src, &p.dst, &p.meta);
        if parallel {
            pending.par_iter().try_for_each(copy)?;
        } else {
            pending.iter().try_for_each(copy)?;
        }
        pending.clear();
        Ok(())
    };
    let mut pending = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir_path = src.join(&rel);
        let mut dir =
            Dir::new(open_dir(&copier, &dir_path, &root)?).map_err(at(Op::ReadDir, &dir_path))?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(at(Op::ReadDir, &dir_path))?;
            let name = entry.file_name();
            if is_dot(name) {
                continue;
            }
            let rel_child = rel.join(OsStr::from_bytes(name.to_bytes()));
            if exclude(&rel_child) {
                continue;
            }
            let src_child = src.join(&rel_child);
            let dir_fd = dir.fd().map_err(at(Op::ReadDir, &dir_path))?;
            let st = rustix::fs::statat(dir_fd, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(at(Op::Stat, &src_child))?;
            let meta = Meta::from_stat(&st);
            let dst_child = dst.join(&rel_child);
            if meta.kind() == Kind::Dir {
                if (meta.dev, meta.ino) == dst_id {
                    continue;
                }
                copier.copy_with_meta(&src_child, &dst_child, &meta)?;
                stack.push(rel_child);
            } else {
                pending.push(Pending {
                    src: src_child,
                    dst: dst_child,
                    meta,
                });
                if pending.len() >= BATCH {
                    copy_batch(&mut pending)?;
                }
            }
        }
    }
    copy_batch(&mut pending)?;
    copier.finish()
}

fn is_dot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

/// Opens a source directory for listing, without touching its atime where allowed.
fn open_dir(copier: &Copier, path: &Path, root: &Meta) -> Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let open = |flags| rustix::fs::openat(CWD, path, flags, Mode::empty());
    // The owner of subdirectories is not known before opening; the root's is a good guess and
    // EPERM falls back.
    let result = if copier.may_skip_atime(root.uid) {
        match open(flags | OFlags::NOATIME) {
            Err(Errno::PERM) => open(flags),
            other => other,
        }
    } else {
        open(flags)
    };
    result.map_err(at(Op::Open, path))
}

/// Removes `path` and everything below it without following symlinks; no error if it does not exist.
pub fn remove_tree(path: &Path) -> Result<()> {
    let meta = match rustix::fs::statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Meta::from_stat(&st),
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Error::io(Op::Stat, path, e)),
    };
    if meta.kind() != Kind::Dir {
        return unlink(path, AtFlags::empty());
    }
    let mut path = path.to_path_buf();
    remove_dir(&mut path)
}

/// Removes the directory at `path` with its contents; `path` is restored before returning.
///
/// Nesting depth is bounded by `PATH_MAX`: deeper paths fail with `ENAMETOOLONG` instead of
/// growing the stack.
fn remove_dir(path: &mut PathBuf) -> Result<()> {
    for (name, is_dir) in list_for_removal(path)? {
        path.push(OsStr::from_bytes(name.to_bytes()));
        let result = if is_dir {
            remove_dir(path)
        } else {
            unlink(path, AtFlags::empty())
        };
        path.pop();
        result?;
    }
    unlink(path, AtFlags::REMOVEDIR)
}

/// The entries of a directory to remove, read completely so no descriptor stays open while
/// descending (memory grows with the size of one directory, which is already on disk). Makes the directory writable first when it is not (we may own a 0555 directory).
fn list_for_removal(path: &Path) -> Result<Vec<(CString, bool)>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(CWD, path, flags, Mode::empty()) {
        Err(Errno::ACCESS) => {
            make_writable(path)?;
            rustix::fs::openat(CWD, path, flags, Mode::empty())
        }
        other => other,
    }
    .map_err(at(Op::Open, path))?;
    let st = rustix::fs::fstat(&fd).map_err(at(Op::Stat, path))?;
    if Meta::from_stat(&st).mode & 0o300 != 0o300 && !rustix::process::geteuid().is_root() {
        make_writable(path)?;
    }
    let mut dir = Dir::new(fd).map_err(at(Op::ReadDir, path))?;
    let mut entries = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(at(Op::ReadDir, path))?;
        if is_dot(entry.file_name()) {
            continue;
        }
        let is_dir = match entry.file_type() {
            FileType::Directory => true,
            FileType::Unknown => {
                let dir_fd = dir.fd().map_err(at(Op::ReadDir, path))?;
                let st = rustix::fs::statat(
                    dir_fd.as_fd(),
                    entry.file_name(),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(at(Op::Stat, path))?;
                Meta::from_stat(&st).kind() == Kind::Dir
            }
            _ => false,
        };
        entries.push((entry.file_name().to_owned(), is_dir));
    }
    Ok(entries)
}

fn make_writable(path: &Path) -> Result<()> {
    rustix::fs::chmodat(CWD, path, Mode::RWXU, AtFlags::empty()).map_err(at(Op::Chmod, path))
}

fn unlink(path: &Path, flags: AtFlags) -> Result<()> {
    match rustix::fs::unlinkat(CWD, path, flags) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(Error::io(Op::Remove, path, e)),
    }
}

#[cfg(test)]
mod bench_tests;
#[cfg(test)]
mod strategy_tests;
#[cfg(test)]
mod tests;
