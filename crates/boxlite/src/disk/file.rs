//! Files built at a temporary name and renamed into place, and temporary trees that remove
//! themselves.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{CWD, RenameFlags, renameat_with};

use crate::error::{Error, Result};

/// Makes temporary names unique within the process (the pid makes them unique across).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The infix of temporary file names: `<final name>.tmp-<pid>-<n>`.
pub const TMP_INFIX: &str = ".tmp-";

/// A file being built beside its final path; removed on drop unless committed.
#[derive(Debug)]
pub struct Partial {
    tmp: PathBuf,
    target: PathBuf,
    file: File,
    done: bool,
}

impl Partial {
    /// Creates a fresh temporary file of `len` bytes (sparse) beside `target`, creating the
    /// directory if needed. Private to the user: a disk holds a box's data.
    pub fn create(target: &Path, len: u64) -> Result<Partial> {
        let dir = parent(target);
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let name = target
            .file_name()
            .ok_or_else(|| Error::InvalidInput(format!("{}: not a file path", target.display())))?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(format!(
            "{TMP_INFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join(tmp_name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io("creating", &tmp, e))?;
        let partial = Partial {
            tmp,
            target: target.to_path_buf(),
            file,
            done: false,
        };
        partial.set_len(len)?;
        Ok(partial)
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The temporary file, open for reading and writing.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Sets the file's length (growing it sparsely).
    pub fn set_len(&self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| Error::io("sizing", &self.tmp, e))
    }

    /// Syncs the file, renames it to its final path and syncs the directory. With
    /// `replace`, an existing file there is replaced; without, it is an error.
    pub fn commit(mut self, replace: bool) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| Error::io("syncing", &self.tmp, e))?;
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        renameat_with(CWD, &self.tmp, CWD, &self.target, flags)
            .map_err(|e| Error::io("renaming into place", &self.target, e.into()))?;
        self.done = true;
        sync_dir(parent(&self.target))
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The directory of `path` (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Syncs a directory, making renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing", dir, e))
}

/// A scratch directory tree, removed (with everything in it) on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `path` afresh: whatever a crashed earlier run left there is removed first.
    pub fn create(path: PathBuf) -> Result<ScratchDir> {
        remove_tree(&path)?;
        // Private: a hostile image's setuid binaries sit in it while the disk is built.
        crate::home::create_private_dir(&path)?;
        Ok(ScratchDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory (it was renamed into place): nothing is removed.
    pub fn forget(self) {
        let _ = std::mem::ManuallyDrop::new(self);
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = remove_tree(&self.path);
    }
}

/// Removes a tree that may hold read-only directories (images have them; only root could
/// remove their entries without first making them writable). A missing tree is fine.
pub fn remove_tree(path: &Path) -> Result<()> {
    let first = match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => e,
        _ => return Ok(()),
    };
    make_dirs_writable(path);
    std::fs::remove_dir_all(path).map_err(|_| Error::io("removing", path, first))
}

/// Gives the owner full access to every directory under `path` (best effort).
fn make_dirs_writable(path: &Path) {
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.permissions().mode() | 0o700;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
}
