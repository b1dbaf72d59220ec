//! Disks built for real (base disks by the EROFS writer, box disks with mkfs.ext4) and checked
//! by loop-mounting them read-only (as root), with `fsck.erofs` and e2fsck.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use oci_layers::{Compression, Image, LayoutBuilder, Store};

use super::*;
use crate::layout::Layout;
use crate::state::StateDb;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Writes `data` at `rel` under `root` with `mode`, creating directories.
fn file(root: &Path, rel: &str, data: impl AsRef<[u8]>, mode: u32) -> PathBuf {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn chown(p: &Path, uid: u32, gid: u32) {
    if is_root() {
        let mode = fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }
}

const LONG_TARGET: &str =
    "/usr/share/a/rather/long/symlink/target/that/does/not/fit/in/the/inode/itself";

/// A two-layer image: owners, modes, setuid, a hardlink, short and long symlinks, an xattr,
/// a device node (as root), then a whiteout, an opaque directory and new files on top.
fn test_image(work: &Path, home: &Path) -> (Store, Image) {
    let l1 = work.join("layer1");
    file(&l1, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644);
    file(&l1, "etc/old.conf", "old\n", 0o644);
    let tool = file(&l1, "bin/tool", "#!/bin/sh\necho tool\n", 0o4755);
    chown(&tool, 0, 0);
    let data = file(&l1, "home/user/data", vec![7u8; 300_000], 0o600);
    chown(&data, 1000, 1000);
    fs::set_permissions(l1.join("home/user"), fs::Permissions::from_mode(0o700)).unwrap();
    chown(&l1.join("home/user"), 1000, 1000);
    file(&l1, "opt/app/old", "old app\n", 0o644);
    fs::hard_link(l1.join("etc/passwd"), l1.join("etc/passwd.link")).unwrap();
    std::os::unix::fs::symlink("passwd", l1.join("etc/short")).unwrap();
    std::os::unix::fs::symlink(LONG_TARGET, l1.join("etc/long")).unwrap();
    rustix::fs::lsetxattr(
        l1.join("etc/passwd"),
        "user.boxlite.test",
        b"value",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    if is_root() {
        fs::create_dir_all(l1.join("dev")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            l1.join("dev/null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        fs::set_permissions(l1.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    }

    let l2 = work.join("layer2");
    file(&l2, "etc/.wh.old.conf", "", 0o644);
    file(&l2, "etc/new", "new\n", 0o640);
    file(&l2, "opt/app/.wh..wh..opq", "", 0o644);
    file(&l2, "opt/app/fresh", "fresh\n", 0o644);
    let log = work.join("layer2/var/log");
    fs::create_dir_all(&log).unwrap();
    chown(&log, 0, 4);

    let layout_dir = work.join("layout");
    LayoutBuilder::new()
        .layer_dir(&l1, Compression::Gzip)
        .layer_dir(&l2, Compression::Zstd)
        .write_layout(&layout_dir, "disktest")
        .unwrap();
    let store = Store::open(home).unwrap();
    store.import(&layout_dir, Some("disktest"), false).unwrap();
    let image = store.get("disktest").unwrap();
    (store, image)
}

/// A read-only loop mount, unmounted on drop.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    /// Mounts `image` (a `fstype` filesystem) read-only, or `None` when this process cannot
    /// (not root, no loop).
    fn new(image: &Path, fstype: &str) -> Option<Mount> {
        if !is_root() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", fstype, "-o", "ro,loop"])
            .arg(image)
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Mount { dir })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Checks an EROFS base disk with `fsck.erofs` (erofs-utils) and the writer's own `verify`.
fn erofs_clean(image: &Path) {
    let out = Command::new("fsck.erofs")
        .arg(image)
        .output()
        .expect("fsck.erofs (erofs-utils) is installed");
    assert!(
        out.status.success(),
        "fsck.erofs {}:\n{}{}",
        image.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    erofs::verify(&fs::read(image).unwrap()).unwrap();
}

/// Runs `e2fsck -fn` (check everything, change nothing) on `image`.
fn fsck_clean(image: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .expect("e2fsck (e2fsprogs) is installed");
    assert!(
        out.status.success(),
        "e2fsck {}:\n{}{}",
        image.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn meta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Checks the mounted base disk of [`test_image`].
fn check_base_contents(m: &Mount) {
    let root = meta(&m.path(""));
    assert_eq!(root.mode() & 0o7777, 0o755, "root mode");
    assert_eq!((root.uid(), root.gid()), (0, 0), "root owner");
    let mut buf = [0u8; 64];
    for marker in ["user.boxlite.rootfs", "user.boxlite.rootfs.partial"] {
        assert!(
            rustix::fs::lgetxattr(m.path(""), marker, &mut buf[..]).is_err(),
            "{marker} must not reach the disk"
        );
    }

    assert_eq!(
        fs::read_to_string(m.path("etc/passwd")).unwrap(),
        "root:x:0:0::/root:/bin/sh\n"
    );
    let n = rustix::fs::lgetxattr(m.path("etc/passwd"), "user.boxlite.test", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"value");
    assert_eq!(meta(&m.path("etc/new")).mode() & 0o7777, 0o640);
    assert!(!m.path("etc/old.conf").exists(), "whiteout applied");
    assert!(!m.path("etc/.wh.old.conf").exists(), "no whiteout marker");
    let app: Vec<_> = fs::read_dir(m.path("opt/app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(app, ["fresh"], "opaque directory");

    let passwd = meta(&m.path("etc/passwd"));
    let link = meta(&m.path("etc/passwd.link"));
    assert_eq!(passwd.ino(), link.ino(), "hardlink");
    assert_eq!(passwd.nlink(), 2);
    assert_eq!(
        fs::read_link(m.path("etc/short")).unwrap(),
        Path::new("passwd")
    );
    assert_eq!(
        fs::read_link(m.path("etc/long")).unwrap(),
        Path::new(LONG_TARGET)
    );

    let tool = meta(&m.path("bin/tool"));
    assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid kept");
    let data = meta(&m.path("home/user/data"));
    assert_eq!(data.mode() & 0o7777, 0o600);
    assert_eq!(
        fs::read(m.path("home/user/data")).unwrap(),
        vec![7u8; 300_000]
    );
    if is_root() {
        assert_eq!((data.uid(), data.gid()), (1000, 1000));
        let home = meta(&m.path("home/user"));
        assert_eq!(
            (home.uid(), home.gid(), home.mode() & 0o7777),
            (1000, 1000, 0o700)
        );
        let log = meta(&m.path("var/log"));
        assert_eq!((log.uid(), log.gid()), (0, 4));
        let null = meta(&m.path("dev/null"));
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, 0o666);
    }
}

struct Env {
    _tmp: tempfile::TempDir,
    layout: Layout,
    db: StateDb,
    store: Store,
    image: Image,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let (store, image) = test_image(&tmp.path().join("work"), &home);
    let layout = Layout::new(&home);
    let db = StateDb::open(&layout.state_db()).unwrap();
    Env {
        _tmp: tmp,
        layout,
        db,
        store,
        image,
    }
}

/// Everything under `dir` (recursively), for "no garbage left" checks.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries {
            let p = e.unwrap().path();
            out.extend(leftovers(&p));
            out.push(p);
        }
    }
    out
}

#[test]
fn a_base_disk_holds_the_image_rootfs_exactly() {
    let env = env();
    let start = Instant::now();
    let path = ensure_base_disk(&env.store, &env.layout, &env.db, &env.image, false).unwrap();
    eprintln!(
        "base disk built in {:.0} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let digest = &env.image.record.manifest_digest;
    assert_eq!(path, env.layout.base_disk(digest));
    let rec = env.db.base_disk(&digest.to_string()).unwrap().unwrap();
    assert_eq!(rec.path, path);
    assert_eq!(rec.image_name, "disktest");
    assert_eq!(rec.size, fs::metadata(&path).unwrap().len());
    assert_eq!(rec.size % 4096, 0);
    erofs_clean(&path);
    assert!(
        leftovers(&env.layout.tmp_dir()).is_empty(),
        "scratch tree removed"
    );
    let disks: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(disks.len(), 1, "no temporary files beside the disk");
    match Mount::new(&path, "erofs") {
        Some(m) => check_base_contents(&m),
        None => eprintln!("not root: contents checked by fsck.erofs only"),
    }
}

#[test]
fn a_second_call_reuses_the_disk_and_a_lost_record_rebuilds_it() {
    let env = env();
    let first = ensure_base_disk(&env.store, &env.layout, &env.db, &env.image, false).unwrap();
    let before = fs::metadata(&first).unwrap();
    let start = Instant::now();
    let again = ensure_base_disk(&env.store, &env.layout, &env.db, &env.image, false).unwrap();
    eprintln!(
        "cached base disk found in {:.2} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let after = fs::metadata(&again).unwrap();
    assert_eq!(first, again);
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );

    // Without its record the file is not trusted: it is built afresh.
    env.db
        .remove_base_disk(&env.image.record.manifest_digest.to_string())
        .unwrap();
    let rebuilt = ensure_base_disk(&env.store, &env.layout, &env.db, &env.image, false).unwrap();
    let remade = fs::metadata(&rebuilt).unwrap();
    assert_ne!(
        (remade.mtime(), remade.mtime_nsec()),
        (before.mtime(), before.mtime_nsec()),
        "built again"
    );
    erofs_clean(&rebuilt);

    remove_base_disk(&env.layout, &env.db, &env.image.record.manifest_digest).unwrap();
    assert!(!rebuilt.exists());
    assert!(env.db.list_base_disks().unwrap().is_empty());
}

#[test]
fn concurrent_callers_build_the_disk_once() {
    const CALLERS: usize = 3;
    let env = Arc::new(env());
    let barrier = Arc::new(Barrier::new(CALLERS));
    let handles: Vec<_> = (0..CALLERS)
        .map(|_| {
            let env = Arc::clone(&env);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let db = StateDb::open(&env.layout.state_db()).unwrap();
                barrier.wait();
                let path =
                    ensure_base_disk(&env.store, &env.layout, &db, &env.image, false).unwrap();
                fs::metadata(path).unwrap().ino()
            })
        })
        .collect();
    let inodes: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(inodes.iter().all(|&i| i == inodes[0]), "{inodes:?}");
}

#[test]
fn a_failed_build_leaves_nothing_behind() {
    let env = env();
    // Damage every layer blob: unpacking fails after the lock and scratch tree exist.
    for layer in &env.image.record.layers {
        let blob = env.store.blob_path(&layer.digest);
        let mut perms = fs::metadata(&blob).unwrap().permissions();
        perms.set_mode(0o644);
        fs::set_permissions(&blob, perms).unwrap();
        fs::write(&blob, b"not a layer").unwrap();
    }
    let err = ensure_base_disk(&env.store, &env.layout, &env.db, &env.image, false).unwrap_err();
    eprintln!("as expected: {err}");
    let path = env.layout.base_disk(&env.image.record.manifest_digest);
    assert!(!path.exists());
    assert!(
        leftovers(&env.layout.tmp_dir()).is_empty(),
        "{:?}",
        leftovers(&env.layout.tmp_dir())
    );
    assert!(leftovers(path.parent().unwrap()).is_empty());
    assert!(env.db.list_base_disks().unwrap().is_empty());
}

#[test]
fn a_box_disk_is_sparse_valid_ext4() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("boxes/abc/disk.ext4");
    let start = Instant::now();
    create_box_disk(&path, 2048).unwrap();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    eprintln!("2 GiB box disk made in {ms:.1} ms");
    let file = fs::metadata(&path).unwrap();
    assert_eq!(file.len(), 2048 << 20);
    let allocated = file.blocks() * 512;
    eprintln!(
        "allocated {} KiB of {} MiB",
        allocated >> 10,
        file.len() >> 20
    );
    assert!(
        allocated < file.len() / 20,
        "sparse: {allocated} bytes allocated"
    );
    assert_eq!(file.mode() & 0o777, 0o600);
    // The ext4 superblock sits 1024 bytes in; its magic 0xEF53 at offset 56 in it.
    let bytes = fs::read(&path)
        .map(|b| b[1024 + 56..1024 + 58].to_vec())
        .unwrap();
    assert_eq!(bytes, [0x53, 0xEF]);
    fsck_clean(&path);
    if let Some(m) = Mount::new(&path, "ext4") {
        assert!(m.path("lost+found").is_dir());
        let root = meta(&m.path(""));
        assert_eq!((root.uid(), root.gid()), (0, 0));
    }
    assert_eq!(leftovers(path.parent().unwrap()), [path]);
}

#[test]
fn a_box_disk_never_replaces_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.ext4");
    fs::write(&path, b"precious").unwrap();
    let err = create_box_disk(&path, 64).unwrap_err();
    assert!(err.to_string().contains("disk.ext4"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"precious");
    assert_eq!(leftovers(dir.path()), [path]);
}

#[test]
fn box_disk_sizes_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [0, 63, crate::options::MAX_DISK_SIZE_MIB + 1] {
        let err = create_box_disk(&dir.path().join("d"), bad).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{bad}: {err}");
    }
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn a_failing_mkfs_reports_its_words() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x");
    fs::File::create(&target)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let args = ["-q", "-F", "-O", "no_such_feature"]
        .map(Into::into)
        .to_vec();
    let err = mkfs::run(
        &mkfs::program().unwrap(),
        &[args, vec![target.clone().into()]].concat(),
        &target,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("mkfs.ext4") && err.contains("no_such_feature"),
        "{err}"
    );
}
