//! Shared test helpers: building layer tars, writing and mounting their images.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use tar::{EntryType, Header};

/// A layer tar built entry by entry with the `tar` crate's builder.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }
}

/// Header fields of one entry.
#[derive(Clone)]
pub struct Attrs {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Default for Attrs {
    fn default() -> Self {
        Attrs {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
        }
    }
}

impl Layer {
    fn header(kind: EntryType, a: &Attrs, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(a.mode);
        h.set_uid(a.uid);
        h.set_gid(a.gid);
        h.set_mtime(a.mtime);
        h.set_size(size);
        h
    }

    pub fn file_with(&mut self, path: &str, data: &[u8], a: &Attrs) -> &mut Self {
        let mut h = Self::header(EntryType::Regular, a, data.len() as u64);
        self.builder.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.file_with(path, data, &Attrs::default())
    }

    pub fn dir_with(&mut self, path: &str, a: &Attrs) -> &mut Self {
        let mut h = Self::header(EntryType::Directory, a, 0);
        self.builder.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.dir_with(
            path,
            &Attrs {
                mode,
                ..Attrs::default()
            },
        )
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(EntryType::Symlink, &Attrs::default(), 0);
        h.set_mode(0o777);
        self.builder.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hard_link(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(EntryType::Link, &Attrs::default(), 0);
        self.builder.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn node(&mut self, path: &str, kind: EntryType, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(kind, &Attrs::default(), 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.builder.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// A PAX header for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.builder
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        self
    }

    pub fn bytes(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

/// An image written to a temporary directory.
pub struct Image {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub summary: erofs::Summary,
}

pub fn write_image(tar: &[u8]) -> Image {
    try_write_image(tar).unwrap()
}

pub fn try_write_image(tar: &[u8]) -> erofs::Result<Image> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.erofs");
    let out = File::create(&path).unwrap();
    let summary = erofs::write_layer(tar, &out, &erofs::Options::default())?;
    let census = erofs::verify(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(census.dirs, summary.dirs);
    Ok(Image { dir, path, summary })
}

/// Whether this machine can loop-mount EROFS; prints why not when it cannot.
pub fn can_mount() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mounting needs root");
        return false;
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs.lines().any(|l| l.trim_end().ends_with("erofs")) {
        eprintln!("skipped: the kernel has no EROFS");
        return false;
    }
    if !Path::new("/dev/loop-control").exists() {
        eprintln!("skipped: no loop devices");
        return false;
    }
    true
}

/// A mount, unmounted when dropped.
pub struct Mount {
    pub dir: tempfile::TempDir,
}

impl Mount {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn erofs(image: &Path) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("mount")
            .args(["-t", "erofs", "-o", "loop,ro"])
            .arg(image)
            .arg(dir.path()));
        Mount { dir }
    }

    pub fn overlay(lower: &[&Path]) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let lowers: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("lowerdir={}", lowers.join(":")))
            .arg(dir.path()));
        Mount { dir }
    }
}

impl Drop for Mount {
    /// Unmounts, retrying: another test thread's `fork` for its own `mount` briefly holds
    /// copies of every open descriptor, which can make this mount busy for a moment. A mount
    /// still busy after that is detached lazily rather than left behind.
    fn drop(&mut self) {
        for _ in 0..40 {
            let done = Command::new("umount").arg(self.dir.path()).output();
            if done.is_ok_and(|o| o.status.success()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs Debian's `fsck.erofs` on the image, when installed.
pub fn fsck(image: &Path) {
    let Ok(out) = Command::new("fsck.erofs")
        .arg("--extract")
        .arg(image)
        .output()
    else {
        eprintln!("skipped: fsck.erofs is not installed (apt-get install erofs-utils)");
        return;
    };
    assert!(
        out.status.success(),
        "fsck.erofs {} failed: {}{}",
        image.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An xattr of `path` (not following symlinks).
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 70_000];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// A merged image of `layers` (bottom first) written to a temporary directory.
pub fn write_merged(layers: &[Vec<u8>]) -> Image {
    try_write_merged(layers).unwrap()
}

pub fn try_write_merged(layers: &[Vec<u8>]) -> erofs::Result<Image> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("merged.erofs");
    let out = File::create(&path).unwrap();
    let summary = erofs::write_merged(
        layers.iter().map(|l| &l[..]),
        &out,
        &erofs::Options::default(),
    )?;
    let census = erofs::verify(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(census.dirs, summary.dirs);
    assert_eq!((summary.whiteouts, summary.opaque_dirs), (0, 0));
    assert_eq!(summary.layers, layers.len() as u64);
    Ok(Image { dir, path, summary })
}

/// What a tree walk sees of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `f`ile, `d`irectory, `l`ink, `c`har, `b`lock, `p`ipe.
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub rdev: u64,
    /// A file's data or a symlink's target.
    pub content: Vec<u8>,
    /// Xattrs but `trusted.overlay.*`, sorted.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Every entry below `root` (the root itself as ""), and for each non-directory the
/// sorted names that share its inode.
pub struct Snapshot {
    pub entries: std::collections::BTreeMap<String, Seen>,
    pub links: std::collections::BTreeMap<String, Vec<String>>,
    /// Link counts of non-directories.
    pub nlink: std::collections::BTreeMap<String, u64>,
}

pub fn seen(path: &Path) -> Seen {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::symlink_metadata(path).unwrap();
    let ft = md.file_type();
    let kind = if ft.is_file() {
        'f'
    } else if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        'p'
    };
    let content = match kind {
        'f' => std::fs::read(path).unwrap(),
        'l' => {
            use std::os::unix::ffi::OsStrExt;
            std::fs::read_link(path)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        }
        _ => Vec::new(),
    };
    Seen {
        kind,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        mtime: (md.mtime(), md.mtime_nsec()),
        rdev: md.rdev(),
        content,
        xattrs: xattrs(path),
    }
}

/// All xattrs of `path` but `trusted.overlay.*`, sorted (symlinks not followed).
pub fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(path, &mut names).unwrap_or(0);
    let mut out: Vec<(String, Vec<u8>)> = names[..n]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| !n.starts_with("trusted.overlay."))
        .map(|n| {
            let v = xattr(path, &n).unwrap_or_default();
            (n, v)
        })
        .collect();
    out.sort();
    out
}

pub fn snapshot(root: &Path) -> Snapshot {
    use std::os::unix::fs::MetadataExt;
    let mut entries = std::collections::BTreeMap::new();
    let mut inodes: std::collections::BTreeMap<(u64, u64), Vec<String>> = Default::default();
    let mut nlink = std::collections::BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let full = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let s = seen(&full);
        if s.kind == 'd' {
            for e in std::fs::read_dir(&full).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                stack.push(if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                });
            }
        } else {
            let md = std::fs::symlink_metadata(&full).unwrap();
            inodes
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(rel.clone());
            nlink.insert(rel.clone(), md.nlink());
        }
        entries.insert(rel, s);
    }
    let mut links = std::collections::BTreeMap::new();
    for mut names in inodes.into_values() {
        names.sort();
        for n in &names {
            links.insert(n.clone(), names.clone());
        }
    }
    Snapshot {
        entries,
        links,
        nlink,
    }
}

/// Asserts two snapshots hold the same entries, metadata, content and inode sharing.
pub fn assert_same_tree(got: &Snapshot, want: &Snapshot, what: &str) {
    let names = |s: &Snapshot| s.entries.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: the same names");
    for (path, w) in &want.entries {
        assert_eq!(&got.entries[path], w, "{what}: {path:?}");
    }
    assert_eq!(got.links, want.links, "{what}: the same hard links");
}
