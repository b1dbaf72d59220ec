//! [`Copier`]: copying single entries, shared by many threads, with hard links kept and
//! directory metadata applied last.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::data::{Engine, Strategy};
use crate::error::{Error, Op, Result, at};
use crate::meta::{self, Kind, Meta, Preserve};
use crate::report::{Counts, Report, add};
use crate::tree::remove_tree;
use crate::xattr::{self, Node, Saved};

/// What to preserve and how to move data.
#[derive(Clone, Debug)]
pub struct Options {
    /// The first strategy tried for file data; `None` tries the best (reflink) first.
    /// Later strategies are still fallen back to where the first one is unsupported.
    pub strategy: Option<Strategy>,
    /// Restore owner and group (needs root for files not owned by the caller).
    pub preserve_owner: bool,
    /// Copy extended attributes (`trusted.*` and `security.*` need root).
    pub preserve_xattrs: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            strategy: None,
            preserve_owner: true,
            preserve_xattrs: true,
        }
    }
}

/// Deferred metadata of one destination directory.
#[derive(Debug)]
struct DirRecord {
    dst: PathBuf,
    meta: Meta,
    xattrs: Saved,
}

/// The first copy of a multiply linked source inode: `None` while it is being made, or if it failed.
type FirstCopy = Arc<OnceLock<Option<PathBuf>>>;

/// Copies entries one at a time; shared across threads (it is `Sync`).
///
/// Call [`copy_entry`](Copier::copy_entry) for directories first, parents before children,
/// then for the other entries in any order from any number of threads, then
/// [`finish`](Copier::finish).
#[derive(Debug)]
pub struct Copier {
    opts: Options,
    engine: Engine,
    /// Source (dev, ino) with more than one link → its first copy.
    links: Mutex<HashMap<(u64, u64), FirstCopy>>,
    dirs: Mutex<Vec<DirRecord>>,
    counts: Counts,
    /// Effective uid, for deciding when `O_NOATIME` is allowed.
    euid: u32,
}

impl Copier {
    /// A copier with nothing copied yet.
    pub fn new(opts: Options) -> Copier {
        Copier {
            engine: Engine::new(opts.strategy.unwrap_or(Strategy::Reflink)),
            opts,
            links: Mutex::new(HashMap::new()),
            dirs: Mutex::new(Vec::new()),
            counts: Counts::default(),
            euid: rustix::process::geteuid().as_raw(),
        }
    }

    /// Copies one entry (not recursively) from `src` to `dst`, replacing what `dst` holds.
    ///
    /// A directory is created, or kept if one exists; its mode, owner, times and extended
    /// attributes are applied in [`finish`](Copier::finish), deepest first, so that writing its
    /// children does not disturb them. A non-directory whose source inode this copier has copied
    /// already becomes a hard link to that first copy. Symlinks are never followed, neither in the
    /// source nor in the destination: an existing symlink at `dst` is replaced, not written through.
    pub fn copy_entry(&self, src: &Path, dst: &Path) -> Result<()> {
        self.copy_with_meta(src, dst, &Meta::lstat(src)?)
    }

    /// Applies deferred directory metadata and returns what was copied.
    pub fn finish(self) -> Result<Report> {
        let records = self
            .dirs
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        // The last record for a path wins, as the last copy_entry for it did.
        let mut seen = HashSet::new();
        let mut records: Vec<DirRecord> = records
            .into_iter()
            .rev()
            .filter(|r| seen.insert(r.dst.clone()))
            .collect();
        records.sort_by_key(|r| Reverse(r.dst.components().count()));
        for record in &records {
            apply_dir(record, &self.opts, &self.counts)?;
        }
        Ok(self.counts.report())
    }

    /// [`copy_entry`](Copier::copy_entry) with the source's `lstat` already done.
    pub(crate) fn copy_with_meta(&self, src: &Path, dst: &Path, meta: &Meta) -> Result<()> {
        match meta.kind() {
            Kind::Dir => self.copy_dir(src, dst, meta),
            _ if meta.nlink > 1 => self.copy_linked(src, dst, meta),
            _ => self.copy_node(src, dst, meta),
        }
    }

    /// Whether the kernel lets us open a file owned by `uid` with `O_NOATIME`.
    pub(crate) fn may_skip_atime(&self, uid: u32) -> bool {
        self.euid == 0 || self.euid == uid
    }

    fn copy_dir(&self, src: &Path, dst: &Path, meta: &Meta) -> Result<()> {
        // Owner-only until finish sets the real mode; writable for the children to come.
        let mkdir = || rustix::fs::mkdirat(CWD, dst, Mode::RWXU);
        match mkdir() {
            Ok(()) => {}
            Err(Errno::EXIST) if Meta::lstat(dst)?.kind() == Kind::Dir => {}
            Err(Errno::EXIST) => {
                remove_tree(dst)?;
                mkdir().map_err(at(Op::CreateDir, dst))?;
            }
            Err(e) => return Err(Error::io(Op::CreateDir, dst, e)),
        }
        let xattrs = if self.opts.preserve_xattrs {
            xattr::save(Node::Path(src))?
        } else {
            Saved::default()
        };
        let record = DirRecord {
            dst: dst.to_path_buf(),
            meta: *meta,
            xattrs,
        };
        self.dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
        add(&self.counts.dirs, 1);
        Ok(())
    }

    /// Copies a non-directory with several links: the first path copies, the rest link to it.
    fn copy_linked(&self, src: &Path, dst: &Path, meta: &Meta) -> Result<()> {
        let cell = {
            let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
            links.entry((meta.dev, meta.ino)).or_default().clone()
        };
        let mut copied = None;
        // Other paths of the same inode wait here until the first copy exists.
        let first = cell.get_or_init(|| {
            let result = self.copy_node(src, dst, meta);
            let ok = result.is_ok();
            copied = Some(result);
            ok.then(|| dst.to_path_buf())
        });
        if let Some(result) = copied {
            return result;
        }
        match first {
            Some(target) if target == dst => Ok(()),
            Some(target) => {
                let link = || rustix::fs::linkat(CWD, target, CWD, dst, AtFlags::empty());
                let result = match link() {
                    Err(Errno::EXIST) => {
                        remove_tree(dst)?;
                        link()
                    }
                    other => other,
                };
                result.map_err(|e| Error::Link {
                    link: dst.to_path_buf(),
                    target: target.clone(),
                    source: e.into(),
                })?;
                add(&self.counts.hardlinks, 1);
                Ok(())
            }
            // The first copy failed and said so; copy this path on its own.
            None => self.copy_node(src, dst, meta),
        }
    }

    fn copy_node(&self, src: &Path, dst: &Path, meta: &Meta) -> Result<()> {
        match meta.kind() {
            Kind::File => self.copy_file(src, dst, meta),
            Kind::Symlink => self.copy_symlink(src, dst, meta),
            Kind::Dir => self.copy_dir(src, dst, meta),
            Kind::Fifo | Kind::CharDevice | Kind::BlockDevice | Kind::Socket => {
                self.copy_special(src, dst, meta)
            }
        }
    }

    fn preserve(&self, mode: bool) -> Preserve {
        Preserve {
            owner: self.opts.preserve_owner,
            mode,
        }
    }

    fn open_src(&self, src: &Path, meta: &Meta) -> Result<OwnedFd> {
        // NONBLOCK: should the file have turned into a fifo since lstat, opening must not hang.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let open = |flags| rustix::fs::openat(CWD, src, flags, Mode::empty());
        let result = if self.may_skip_atime(meta.uid) {
            // Reading must not change the source's atime, which the copy preserves.
            match open(flags | OFlags::NOATIME) {
                Err(Errno::PERM) => open(flags),
                other => other,
            }
        } else {
            open(flags)
        };
        result.map_err(at(Op::Open, src))
    }

    fn copy_file(&self, src: &Path, dst: &Path, meta: &Meta) -> Result<()> {
        let src_fd = self.open_src(src, meta)?;
        // O_EXCL: a fresh inode, never an existing file or the target of a symlink.
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dst_fd = create_replacing(dst, Op::CreateFile, || {
            rustix::fs::openat(CWD, dst, flags, Mode::RUSR | Mode::WUSR)
        })?;
        let created = Meta::from_stat(&rustix::fs::fstat(&dst_fd).map_err(at(Op::Stat, dst))?);
        let used = self
            .engine
            .copy(src_fd.as_fd(), dst_fd.as_fd(), meta, created.dev)
            .map_err(|e| Error::Data {
                src: src.to_path_buf(),
                dst: dst.to_path_buf(),
                source: e.into(),
            })?;
        // A new file is ours already, which for root-owned trees saves one syscall per file.
        let mut preserve = self.preserve(true);
        preserve.owner &= (created.uid, created.gid) != (meta.uid, meta.gid);
        meta::apply_fd(dst_fd.as_fd(), dst, meta, preserve, || {
            self.copy_xattrs(Node::Fd(src_fd.as_fd(), src), Node::Fd(dst_fd.as_fd(), dst))
        })?;
        if let Some(strategy) = used {
            self.counts.strategy(strategy);
        }
        add(&self.counts.files, 1);
        add(&self.counts.bytes, meta.size);
        Ok(())
    }

    fn copy_symlink(&self, src: &Path, dst: &Path, meta: &Meta) -> Result<()> {
        let target = rustix::fs::readlinkat(CWD, src, Vec::new()).map_err(at(Op::ReadLink, src))?;
        create_replacing(dst, Op::CreateSymlink, || {
            rustix::fs::symlinkat(target.as_c_str(), CWD, dst)
        })?;
        meta::apply_path(dst, meta, self.preserve(false), || {
            self.copy_xattrs(Node::Path(src), Node::Path(dst))
        })?;
        add(&self.counts.symlinks, 1);
        Ok(())
    }

    /// Fifos, devices and unix sockets: all recreated with `mknod` (a socket node is only a name;
    /// whoever binds it later replaces it).
    fn copy_special(&self, src: &Path, dst: &Path, meta: &Meta) -> Result<()> {
        let file_type = FileType::from_raw_mode(meta.mode);
        let rdev = match meta.kind() {
            Kind::CharDevice | Kind::BlockDevice => meta.rdev,
            _ => 0,
        };
        create_replacing(dst, Op::CreateNode, || {
            rustix::fs::mknodat(CWD, dst, file_type, Mode::RUSR | Mode::WUSR, rdev)
        })?;
        meta::apply_path(dst, meta, self.preserve(true), || {
            self.copy_xattrs(Node::Path(src), Node::Path(dst))
        })?;
        add(&self.counts.specials, 1);
        Ok(())
    }

    fn copy_xattrs(&self, src: Node<'_>, dst: Node<'_>) -> Result<()> {
        if self.opts.preserve_xattrs {
            add(&self.counts.xattrs_skipped, xattr::copy(src, dst)?);
        }
        Ok(())
    }
}

/// Runs `create`; if something exists at `dst`, removes it (a directory with its contents) and
/// runs `create` once more.
fn create_replacing<T>(
    dst: &Path,
    op: Op,
    create: impl Fn() -> rustix::io::Result<T>,
) -> Result<T> {
    match create() {
        Err(Errno::EXIST) => {
            remove_tree(dst)?;
            create().map_err(at(op, dst))
        }
        other => other.map_err(at(op, dst)),
    }
}

/// Applies a directory's deferred metadata through a descriptor, so a path that is no longer a
/// directory (replaced after it was recorded) is left alone rather than followed.
fn apply_dir(record: &DirRecord, opts: &Options, counts: &Counts) -> Result<()> {
    let dst = &record.dst;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(CWD, dst, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
        Err(e) => return Err(Error::io(Op::Open, dst, e)),
    };
    let preserve = Preserve {
        owner: opts.preserve_owner,
        mode: true,
    };
    meta::apply_fd(fd.as_fd(), dst, &record.meta, preserve, || {
        if opts.preserve_xattrs {
            add(
                &counts.xattrs_skipped,
                xattr::restore(&record.xattrs, Node::Fd(fd.as_fd(), dst))?,
            );
        }
        Ok(())
    })
}

#[cfg(test)]
#[path = "copier_tests.rs"]
mod tests;
