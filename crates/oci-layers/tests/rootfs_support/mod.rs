//! Shared fixtures for the rootfs assembly tests: layer trees built file by file on the real
//! filesystem, a rich three-layer image that exercises every whiteout rule, snapshots of
//! assembled trees, and loop-mounted XFS.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_layers::builder::BuiltImage;
use oci_layers::{Algorithm, Compression, Digest, ImageRecord, LayoutBuilder, Store};
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};

/// The rich image's reference name inside its layout.
pub const RICH_REF: &str = "rich";
/// Base mtimes of the rich image's three layers: every entry gets its layer's.
pub const T1: i64 = 1_500_000_000;
/// See [`T1`].
pub const T2: i64 = 1_600_000_000;
/// See [`T1`].
pub const T3: i64 = 1_700_000_000;
/// Explicit mtimes that differ from their layer's base.
pub const PASSWD_MTIME: i64 = 1_111_111_111;
/// See [`PASSWD_MTIME`].
pub const THING_MTIME: i64 = 1_234_567_890;
/// See [`PASSWD_MTIME`].
pub const DOC_DIR_MTIME: i64 = 1_654_321_000;

/// The xattrs layer one puts on `xattr/file`.
pub const XATTRS: &[(&str, &[u8])] = &[
    ("user.boxlite.test", b"hello"),
    ("user.boxlite.binary", b"\0\x01\xfe\xff"),
];

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Prints why a test does nothing and returns true when not root.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("skipping {test}: needs root (mounts, device nodes, owners)");
    true
}

/// A layer's directory tree under construction.
pub struct Tree {
    pub root: PathBuf,
}

impl Tree {
    pub fn new(root: impl Into<PathBuf>) -> Tree {
        let root = root.into();
        fs::create_dir_all(&root).unwrap();
        Tree { root }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn parent(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    pub fn dir(&self, rel: &str, mode: u32) -> &Self {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    pub fn file(&self, rel: &str, data: impl AsRef<[u8]>, mode: u32) -> &Self {
        let p = self.parent(rel);
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    /// An OCI whiteout for `rel` (`dir/.wh.name`).
    pub fn whiteout(&self, rel: &str) -> &Self {
        let rel = Path::new(rel);
        let name = format!(".wh.{}", rel.file_name().unwrap().to_str().unwrap());
        let marker = rel.parent().unwrap().join(name);
        self.file(marker.to_str().unwrap(), b"", 0o644)
    }

    /// Marks the directory `rel` opaque.
    pub fn opaque(&self, rel: &str) -> &Self {
        self.file(&format!("{rel}/.wh..wh..opq"), b"", 0o644)
    }

    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        std::os::unix::fs::symlink(target, self.parent(rel)).unwrap();
        self
    }

    pub fn hardlink(&self, rel: &str, existing: &str) -> &Self {
        fs::hard_link(self.path(existing), self.parent(rel)).unwrap();
        self
    }

    pub fn fifo(&self, rel: &str, mode: u32) -> &Self {
        let p = self.parent(rel);
        rustix::fs::mknodat(CWD, &p, FileType::Fifo, Mode::from_raw_mode(mode), 0).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    /// A character device (root only).
    pub fn char_device(&self, rel: &str, mode: u32, major: u32, minor: u32) -> &Self {
        let p = self.parent(rel);
        let dev = rustix::fs::makedev(major, minor);
        rustix::fs::mknodat(
            CWD,
            &p,
            FileType::CharacterDevice,
            Mode::from_raw_mode(mode),
            dev,
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    pub fn xattr(&self, rel: &str, name: &str, value: &[u8]) -> &Self {
        rustix::fs::lsetxattr(self.path(rel), name, value, rustix::fs::XattrFlags::empty())
            .unwrap();
        self
    }

    /// Sets owner and group (root only); the mode is set again since chown clears setuid.
    pub fn chown(&self, rel: &str, uid: u32, gid: u32) -> &Self {
        let p = self.path(rel);
        let mode = fs::symlink_metadata(&p).unwrap().mode() & 0o7777;
        rustix::fs::chownat(
            CWD,
            &p,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        if !fs::symlink_metadata(&p).unwrap().file_type().is_symlink() {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }
        self
    }

    /// Sets the mtime (and atime) of `rel` without following a symlink.
    pub fn mtime(&self, rel: &str, secs: i64) -> &Self {
        set_mtime(&self.path(rel), secs);
        self
    }

    /// Gives every entry (directories after their children) the mtime `secs`.
    pub fn stamp(&self, secs: i64) -> &Self {
        stamp(&self.root, secs);
        self
    }
}

pub fn set_mtime(path: &Path, secs: i64) {
    let ts = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn stamp(dir: &Path, secs: i64) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            stamp(&path, secs);
        }
        set_mtime(&path, secs);
    }
}

/// The rich image's three layer trees under `work`; root-only entries (owners, a device)
/// only when root.
pub fn rich_layers(work: &Path) -> [PathBuf; 3] {
    let root = is_root();
    let l1 = Tree::new(work.join("layer1"));
    l1.dir("etc", 0o755)
        .file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .file("etc/hosts", "127.0.0.1 localhost\n", 0o644)
        .file("etc/old.conf", "old\n", 0o644)
        .file("usr/bin/tool", "#!/bin/sh\necho tool\n", 0o755)
        .file("usr/bin/su", "not really su\n", 0o4755)
        .file("usr/share/doc/a/README", "a\n", 0o644)
        .file("usr/share/doc/b/README", "b\n", 0o644)
        .file("usr/share/man/old.1", "old page\n", 0o644)
        .file("opt/app/old1", "old1\n", 0o644)
        .file("opt/app/old2", "old2\n", 0o644)
        .file("opt/app/sub/old3", "old3\n", 0o644)
        .file("var/lib/thing", "v1\n", 0o644)
        .file("var/cache/apt/pkgcache", "cache\n", 0o644)
        .file("data/was-dir/child", "child\n", 0o644)
        .file("data/was-file", "a file\n", 0o644)
        .file("hard/a", "shared inode\n", 0o644)
        .hardlink("hard/b", "hard/a")
        .hardlink("hard/c", "hard/a")
        .symlink("links/dangling", "/nonexistent/target")
        .symlink("links/dangling-rel", "../missing/file")
        .symlink("links/to-passwd", "../etc/passwd")
        .fifo("run/fifo", 0o600)
        .dir("tmp", 0o1777)
        .file("xattr/file", "has xattrs\n", 0o644)
        .file("big/blob", patterned(300_000), 0o644)
        .file("empty", b"", 0o600)
        .file("ro/inside", "in a read-only directory\n", 0o444)
        .file("ro/sub/deeper", "deeper\n", 0o644)
        .dir("ro/sub", 0o500)
        .dir("ro", 0o555)
        .file("gone-ro/file", "hidden by layer 2\n", 0o644)
        .dir("gone-ro", 0o555);
    for (name, value) in XATTRS {
        l1.xattr("xattr/file", name, value);
    }
    if root {
        l1.dir("srv", 0o2775)
            .file("srv/owned", "owned by 1000\n", 0o640)
            .chown("srv", 1000, 1001)
            .chown("srv/owned", 1000, 1001)
            .char_device("dev/null", 0o666, 1, 3)
            // Unreadable but to root: tarring and snapshotting it needs root.
            .file("private/secret", "no access\n", 0o000)
            .dir("private", 0o700);
    }
    l1.stamp(T1).mtime("etc/passwd", PASSWD_MTIME);

    let l2 = Tree::new(work.join("layer2"));
    l2.whiteout("etc/old.conf")
        .file("etc/hosts", "127.0.0.1 localhost boxlite\n", 0o600)
        .whiteout("usr/share/doc")
        .whiteout("usr/share/man")
        .file("usr/share/man/new.1", "new page\n", 0o644)
        .opaque("opt/app")
        .file("opt/app/new1", "new1\n", 0o644)
        .file("opt/app/newdir/new2", "new2\n", 0o644)
        .whiteout("var/lib/thing")
        .whiteout("var/cache/apt")
        .file("data/was-dir", "now a file\n", 0o644)
        .file("data/was-file/inner", "now a dir\n", 0o644)
        .whiteout("hard/c")
        .whiteout("gone-ro")
        .symlink("links/thunar", "thunar");
    l2.stamp(T2);

    let l3 = Tree::new(work.join("layer3"));
    l3.file("var/lib/thing", "v3\n", 0o600)
        .file("usr/share/doc/new/README", "new doc\n", 0o644)
        .whiteout("never-existed");
    l3.stamp(T3)
        .mtime("var/lib/thing", THING_MTIME)
        .mtime("usr/share/doc", DOC_DIR_MTIME);
    [l1.root.clone(), l2.root.clone(), l3.root.clone()]
}

/// Writes the rich image as an OCI layout at `work/layout` (layers gzip, zstd, uncompressed).
pub fn rich_layout(work: &Path) -> (PathBuf, BuiltImage) {
    rich_layout_compressed(
        work,
        [Compression::Gzip, Compression::Zstd, Compression::None],
    )
}

/// [`rich_layout`] with each layer compressed as given.
pub fn rich_layout_compressed(work: &Path, compression: [Compression; 3]) -> (PathBuf, BuiltImage) {
    let layers = rich_layers(work);
    let layout = work.join("layout");
    let built = layers
        .into_iter()
        .zip(compression)
        .fold(LayoutBuilder::new(), |b, (dir, c)| b.layer_dir(dir, c))
        .write_layout(&layout, RICH_REF)
        .unwrap();
    (layout, built)
}

/// A small two-layer image (with a whiteout) at `work/<tag>-layout`, its content marked by `tag`.
pub fn small_layout(work: &Path, tag: &str) -> PathBuf {
    let l1 = Tree::new(work.join(format!("{tag}-l1")));
    l1.file("etc/os-release", format!("ID={tag}\n"), 0o644)
        .file("bin/sh", "#!shell\n", 0o755)
        .file("gone", "gone\n", 0o644)
        .symlink("bin/bash", "sh")
        .stamp(T1);
    let l2 = Tree::new(work.join(format!("{tag}-l2")));
    l2.file("etc/motd", format!("hello from {tag}\n"), 0o644)
        .whiteout("gone")
        .stamp(T2);
    let layout = work.join(format!("{tag}-layout"));
    LayoutBuilder::new()
        .layer_dir(&l1.root, Compression::Gzip)
        .layer_dir(&l2.root, Compression::Gzip)
        .write_layout(&layout, tag)
        .unwrap();
    layout
}

/// Deterministic incompressible-ish bytes.
pub fn patterned(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A store under `home` with the layout at `layout` imported as `name`.
pub fn import(home: &Path, layout: &Path, name: &str) -> (Store, ImageRecord) {
    let store = Store::open(home).unwrap();
    let record = store.import(layout, Some(name), false).unwrap();
    (store, record)
}

/// What kind of filesystem object a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
}

/// Everything about one path that assembly must get right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Regular files only; 0 otherwise.
    pub size: u64,
    /// sha256 of a regular file's data.
    pub hash: Option<String>,
    pub target: Option<PathBuf>,
    pub mtime: (i64, i64),
    /// Devices only.
    pub rdev: u64,
    /// `user.*` attributes.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Non-directories: the link count.
    pub nlink: u64,
    /// Non-directories with several links: the first path (sorted) of the same inode.
    pub link_group: Option<String>,
}

/// Every path under `root` (not `root` itself), keyed by its relative path.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    walk(root, root, &mut out, &mut inodes);
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, Node>,
    inodes: &mut HashMap<(u64, u64), String>,
) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else {
            Kind::Socket
        };
        let mut link_group = None;
        if kind != Kind::Dir && meta.nlink() > 1 {
            // Paths are visited sorted, so the first one seen names the group.
            let first = inodes
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| rel.clone());
            link_group = Some(first.clone());
        }
        let node = Node {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: if kind == Kind::File { meta.len() } else { 0 },
            hash: (kind == Kind::File)
                .then(|| Digest::of(Algorithm::Sha256, &fs::read(&path).unwrap()).to_string()),
            target: (kind == Kind::Symlink).then(|| fs::read_link(&path).unwrap()),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            rdev: if matches!(kind, Kind::Char | Kind::Block) {
                meta.rdev()
            } else {
                0
            },
            xattrs: user_xattrs(&path),
            nlink: if kind == Kind::Dir { 0 } else { meta.nlink() },
            link_group,
        };
        out.insert(rel, node);
        if kind == Kind::Dir {
            walk(root, &path, out, inodes);
        }
    }
}

/// The `user.*` extended attributes of `path` (not following a symlink).
pub fn user_xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 64 << 10];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return BTreeMap::new(),
        Err(e) => panic!("listing xattrs of {}: {e}", path.display()),
    };
    let mut out = BTreeMap::new();
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        if !name.starts_with(b"user.") {
            continue;
        }
        let mut value = vec![0u8; 64 << 10];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
        value.truncate(len);
        out.insert(String::from_utf8(name.to_vec()).unwrap(), value);
    }
    out
}

/// Every path under `root` whose name contains `.wh.`.
pub fn whiteout_names(snapshot: &BTreeMap<String, Node>) -> Vec<&String> {
    snapshot
        .keys()
        .filter(|p| {
            Path::new(p)
                .iter()
                .any(|c| c.to_string_lossy().contains(".wh."))
        })
        .collect()
}

/// Completion record names (the `record` module is private; these are its on-disk names).
pub const COMPLETE_XATTR: &str = "user.boxlite.rootfs";
/// See [`COMPLETE_XATTR`].
pub const PARTIAL_XATTR: &str = "user.boxlite.rootfs.partial";

/// The value of xattr `name` on `path`, if set.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64 << 10];
    match rustix::fs::getxattr(path, name, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(rustix::io::Errno::NODATA) => None,
        Err(e) => panic!("getxattr {name} on {}: {e}", path.display()),
    }
}

/// Entries in the layer cache's staging directory (should be none after any run).
pub fn cache_staging(home: &Path) -> Vec<String> {
    match fs::read_dir(home.join("layers/tmp")) {
        Ok(read) => read
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Names in `dir` starting with the extraction fallback's staging prefix.
pub fn fallback_staging(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".boxlite-staging-"))
        .collect()
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An XFS filesystem with reflink, loop-mounted from a sparse file; unmounted on drop.
pub struct Xfs {
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Xfs {
    pub fn mount() -> Xfs {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("xfs.img");
        // mkfs.xfs refuses filesystems under 300 MiB; the file is sparse.
        fs::File::create_new(&img)
            .unwrap()
            .set_len(400 << 20)
            .unwrap();
        run(Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&img));
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        // Another process may grab the free loop device between lookup and attach: retry.
        let mut last = String::new();
        for _ in 0..10 {
            let out = Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&mnt)
                .output()
                .unwrap();
            if out.status.success() {
                return Xfs { dir, mnt };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("mount -o loop {}: {last}", img.display());
    }

    pub fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        // `mount -o loop` sets autoclear, so unmounting also frees the loop device.
        let ok = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        let _ = &self.dir;
    }
}
