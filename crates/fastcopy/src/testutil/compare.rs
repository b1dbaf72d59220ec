//! Entry-by-entry comparison of two trees, written independently of the code under test.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Everything compared about one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) kind: &'static str,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Size of files and symlinks; directories' sizes are filesystem-specific and left out.
    pub(crate) size: u64,
    pub(crate) rdev: u64,
    pub(crate) mtime: (i64, i64),
    /// Left out for symlinks: reading a link (as any copy must) moves its atime.
    pub(crate) atime: Option<(i64, i64)>,
    pub(crate) target: Option<PathBuf>,
    pub(crate) xattrs: BTreeMap<String, Vec<u8>>,
    /// Compared as a sharing pattern, not by value; see [`Entry::without_ino`].
    ino: u64,
}

impl Entry {
    /// The entry with its inode number blanked, for comparing entries of different trees.
    pub(crate) fn without_ino(&self) -> Entry {
        Entry {
            ino: 0,
            ..self.clone()
        }
    }
}

fn kind(ft: fs::FileType) -> &'static str {
    if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_socket() {
        "socket"
    } else {
        "unknown"
    }
}

/// All extended attributes of `path` (not followed), via the raw syscalls.
pub(crate) fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut list = vec![0u8; 65_536];
    let n = match rustix::fs::llistxattr(path, &mut list[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) => 0,
        Err(e) => panic!("llistxattr {}: {e}", path.display()),
    };
    let mut out = BTreeMap::new();
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8(name.to_vec()).unwrap();
        let mut value = vec![0u8; 65_536];
        let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]).unwrap();
        value.truncate(len);
        out.insert(name, value);
    }
    out
}

/// Every entry below `root` (and `root` itself as ""), each `lstat`ed before anything reads it.
pub(crate) fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let path = root.join(&rel);
        let md = fs::symlink_metadata(&path).unwrap();
        let kind = kind(md.file_type());
        let entry = Entry {
            kind,
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            size: if kind == "dir" { 0 } else { md.size() },
            rdev: md.rdev(),
            mtime: (md.mtime(), md.mtime_nsec()),
            atime: (kind != "symlink").then(|| (md.atime(), md.atime_nsec())),
            target: (kind == "symlink").then(|| fs::read_link(&path).unwrap()),
            xattrs: xattrs(&path),
            ino: md.ino(),
        };
        if kind == "dir" {
            for name in list_without_atime(&path) {
                todo.push(rel.join(name));
            }
        }
        out.insert(rel, entry);
    }
    out
}

/// The names in a directory, read with `O_NOATIME` so that looking does not change the tree.
fn list_without_atime(path: &Path) -> Vec<PathBuf> {
    use rustix::fs::{CWD, Dir, Mode, OFlags};
    use std::os::unix::ffi::OsStrExt;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::NOATIME;
    let fd = rustix::fs::openat(CWD, path, flags, Mode::empty()).unwrap();
    let mut names = Vec::new();
    for entry in Dir::new(fd).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(PathBuf::from(std::ffi::OsStr::from_bytes(name)));
        }
    }
    names
}

/// Groups of paths that share an inode (directories excluded), as sorted path lists.
fn link_groups(tree: &BTreeMap<PathBuf, Entry>) -> BTreeSet<Vec<PathBuf>> {
    let mut by_ino: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    for (path, e) in tree {
        if e.kind != "dir" {
            by_ino.entry(e.ino).or_default().push(path.clone());
        }
    }
    by_ino.into_values().filter(|g| g.len() > 1).collect()
}

/// Asserts that `copy` holds exactly what `orig` holds: the same paths, and for each the same
/// kind, mode, owner, size, device number, mtime, atime, symlink target, xattrs and content,
/// and the same pattern of shared inodes.
pub(crate) fn assert_same_tree(orig: &Path, copy: &Path) {
    let a = snapshot(orig);
    let b = snapshot(copy);
    let a_paths: Vec<_> = a.keys().collect();
    let b_paths: Vec<_> = b.keys().collect();
    assert_eq!(a_paths, b_paths, "different sets of paths");
    for (path, ea) in &a {
        let eb = &b[path];
        assert_eq!(
            ea.without_ino(),
            eb.without_ino(),
            "entry {} differs",
            path.display()
        );
    }
    assert_eq!(link_groups(&a), link_groups(&b), "hard link groups differ");
    for (path, e) in &a {
        if e.kind == "file" {
            let (x, y) = (
                fs::read(orig.join(path)).unwrap(),
                fs::read(copy.join(path)).unwrap(),
            );
            assert!(x == y, "content of {} differs", path.display());
        }
    }
}
