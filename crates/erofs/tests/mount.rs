//! Images written from layer tars, mounted by the host kernel and compared with what the
//! tar says; Debian's `fsck.erofs` checks each image too.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::{Attrs, Layer, Mount, can_mount, fsck, write_image, xattr};
use tar::EntryType;

/// A valid `vfs_cap_data` (revision 2, CAP_NET_RAW) with a newline byte, which PAX
/// parsing by lines would break.
const CAP: &[u8] =
    b"\x01\x00\x00\x02\x00\x20\x00\x00\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

fn meta(root: &Path, path: &str) -> fs::Metadata {
    fs::symlink_metadata(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn file_sizes_round_trip() {
    let sizes = [0usize, 1, 4095, 4096, 4097, 8192, 3 * 1024 * 1024 + 17];
    let mut layer = Layer::default();
    for (i, &size) in sizes.iter().enumerate() {
        layer.file(&format!("f{size}"), &pattern(size, i as u8));
    }
    let image = write_image(&layer.bytes());
    assert_eq!(image.summary.files, sizes.len() as u64);
    assert_eq!(image.summary.data_bytes, sizes.iter().sum::<usize>() as u64);
    assert_eq!(image.summary.image_bytes % 4096, 0);
    fsck(&image.path);
    if !can_mount() {
        return;
    }
    let m = Mount::erofs(&image.path);
    for (i, &size) in sizes.iter().enumerate() {
        let got = fs::read(m.path().join(format!("f{size}"))).unwrap();
        assert!(got == pattern(size, i as u8), "content of f{size}");
        let md = meta(m.path(), &format!("f{size}"));
        assert_eq!(
            (md.mode(), md.uid(), md.gid(), md.mtime()),
            (0o100644, 0, 0, 1_600_000_000)
        );
    }
}

#[test]
fn every_kind_of_entry_round_trips() {
    let long_name = "n".repeat(255);
    let long_target = "t/".repeat(2000);
    let mut layer = Layer::default();
    layer
        .dir("etc", 0o750)
        .file("etc/passwd", b"root:x:0:0\n")
        // Parents the layer never lists.
        .file("usr/lib/deep/file", b"deep")
        .file(&format!("etc/{long_name}"), b"long")
        .symlink("etc/short", "passwd")
        .symlink("etc/long", &long_target)
        .symlink("loop1", "loop2")
        .symlink("loop2", "loop1")
        .hard_link("etc/passwd.link", "etc/passwd")
        .hard_link("passwd.again", "./etc/passwd")
        .node("dev/null", EntryType::Char, 1, 3)
        .node("dev/sda1", EntryType::Block, 8, 1)
        .node("dev/big", EntryType::Char, 259, 0x12345)
        .node("dev/fifo", EntryType::Fifo, 0, 0)
        .file_with(
            "bin/su",
            b"#!",
            &Attrs {
                mode: 0o4755,
                ..Attrs::default()
            },
        )
        .dir("tmp", 0o1777)
        .file_with(
            "home/big",
            b"owned",
            &Attrs {
                uid: 100_000,
                gid: 200_000,
                mode: 0o600,
                mtime: 42,
            },
        )
        .pax(&[
            ("SCHILY.xattr.security.capability", CAP),
            ("SCHILY.xattr.user.note", b"hello"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("mtime", b"1700000000.123456789"),
        ])
        .file("bin/ping", b"ping");
    let image = write_image(&layer.bytes());
    let s = &image.summary;
    assert_eq!((s.symlinks, s.specials, s.hard_links), (4, 4, 2));
    assert_eq!(
        s.skipped_xattrs, 1,
        "trusted.overlay.* from the tar is dropped"
    );
    fsck(&image.path);
    if !can_mount() {
        return;
    }
    let m = Mount::erofs(&image.path);
    let root = m.path();
    assert_eq!(meta(root, "etc").mode(), 0o40750);
    for implied in ["usr", "usr/lib", "usr/lib/deep", "dev", "bin", "home"] {
        let md = meta(root, implied);
        assert_eq!(
            (md.mode(), md.uid(), md.mtime()),
            (0o40755, 0, 0),
            "{implied}"
        );
    }
    assert_eq!(meta(root, ".").mode(), 0o40755);
    assert_eq!(fs::read(root.join("usr/lib/deep/file")).unwrap(), b"deep");
    assert_eq!(
        fs::read(root.join(format!("etc/{long_name}"))).unwrap(),
        b"long"
    );
    assert_eq!(
        fs::read_link(root.join("etc/short")).unwrap(),
        Path::new("passwd")
    );
    assert_eq!(
        fs::read_link(root.join("etc/long")).unwrap(),
        Path::new(&long_target)
    );
    assert_eq!(
        fs::read_link(root.join("loop1")).unwrap(),
        Path::new("loop2")
    );
    let (a, b, c) = (
        meta(root, "etc/passwd"),
        meta(root, "etc/passwd.link"),
        meta(root, "passwd.again"),
    );
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 3));
    assert_eq!(a.ino(), c.ino());
    let null = meta(root, "dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert!(meta(root, "dev/sda1").file_type().is_block_device());
    assert_eq!(meta(root, "dev/sda1").rdev(), rustix::fs::makedev(8, 1));
    assert_eq!(
        meta(root, "dev/big").rdev(),
        rustix::fs::makedev(259, 0x12345)
    );
    assert!(meta(root, "dev/fifo").file_type().is_fifo());
    assert_eq!(meta(root, "bin/su").mode(), 0o104755);
    assert_eq!(meta(root, "tmp").mode(), 0o41777);
    let big = meta(root, "home/big");
    assert_eq!(
        (big.uid(), big.gid(), big.mode(), big.mtime()),
        (100_000, 200_000, 0o100600, 42)
    );
    let ping = root.join("bin/ping");
    assert_eq!(xattr(&ping, "security.capability").unwrap(), CAP);
    assert_eq!(xattr(&ping, "user.note").unwrap(), b"hello");
    assert_eq!(xattr(&ping, "trusted.overlay.opaque"), None);
    let md = meta(root, "bin/ping");
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_700_000_000, 123_456_789));
}

#[test]
fn large_directories_span_blocks() {
    let mut layer = Layer::default();
    let names: Vec<String> = (0..5000)
        .map(|i| format!("entry-{i:05}-{}", "x".repeat(i % 40)))
        .collect();
    for name in &names {
        layer.file(&format!("big/{name}"), name.as_bytes());
    }
    let long: Vec<String> = (0..40)
        .map(|i| format!("{i:03}{}", "L".repeat(252)))
        .collect();
    for name in &long {
        layer.file(&format!("long/{name}"), b"");
    }
    let image = write_image(&layer.bytes());
    fsck(&image.path);
    if !can_mount() {
        return;
    }
    let m = Mount::erofs(&image.path);
    let mut listed: Vec<String> = fs::read_dir(m.path().join("big"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(listed, want);
    // Lookups binary-search the blocks: every name must be found by path.
    for name in names.iter().step_by(7) {
        assert_eq!(
            fs::read(m.path().join("big").join(name)).unwrap(),
            name.as_bytes()
        );
    }
    for name in &long {
        assert!(m.path().join("long").join(name).exists(), "{name}");
    }
    assert_eq!(
        fs::read_dir(m.path().join("long")).unwrap().count(),
        long.len()
    );
}

#[test]
fn later_entries_replace_earlier_ones() {
    let mut layer = Layer::default();
    layer
        .file("a", b"first")
        .file("a", b"second")
        .dir("d", 0o700)
        .file("d/child", b"kept")
        .dir("d", 0o750)
        .dir("gone", 0o755)
        .file("gone/child", b"dropped")
        .file("gone", b"now a file")
        .file("was_file", b"x")
        .dir("was_file", 0o711)
        .file("target", b"old")
        .hard_link("link", "target")
        .file("target", b"new");
    let image = write_image(&layer.bytes());
    fsck(&image.path);
    if !can_mount() {
        return;
    }
    let m = Mount::erofs(&image.path);
    let root = m.path();
    assert_eq!(fs::read(root.join("a")).unwrap(), b"second");
    assert_eq!(meta(root, "d").mode(), 0o40750);
    assert_eq!(fs::read(root.join("d/child")).unwrap(), b"kept");
    assert_eq!(fs::read(root.join("gone")).unwrap(), b"now a file");
    assert_eq!(meta(root, "was_file").mode(), 0o40711);
    assert_eq!(fs::read(root.join("link")).unwrap(), b"old");
    assert_eq!(fs::read(root.join("target")).unwrap(), b"new");
    assert_eq!(meta(root, "link").nlink(), 1);
}

#[test]
fn markers_become_overlay_whiteouts() {
    let mut layer = Layer::default();
    layer
        .file("etc/.wh.passwd", b"")
        .dir("opq", 0o755)
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"upper")
        .file("implied/.wh..wh..opq", b"")
        .file(".wh.redone", b"")
        .dir("redone", 0o755)
        .file(".wh.refile", b"")
        .file("refile", b"again")
        .file(".wh..wh.plnk", b"")
        .file(".wh..wh.plnk/123", b"aufs")
        .hard_link("aufs/one", ".wh..wh.plnk/123")
        .hard_link("aufs/two", ".wh..wh.plnk/123");
    let image = write_image(&layer.bytes());
    let s = &image.summary;
    assert_eq!((s.whiteouts, s.opaque_dirs, s.skipped), (1, 3, 2));
    fsck(&image.path);
    if !can_mount() {
        return;
    }
    let m = Mount::erofs(&image.path);
    let root = m.path();
    let wh = meta(root, "etc/passwd");
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!root.join("etc/.wh.passwd").exists());
    for dir in ["opq", "implied", "redone"] {
        assert_eq!(
            xattr(&root.join(dir), "trusted.overlay.opaque").unwrap(),
            b"y",
            "{dir}"
        );
        assert!(!root.join(dir).join(".wh..wh..opq").exists());
    }
    assert_eq!(xattr(root, "trusted.overlay.opaque"), None);
    assert_eq!(fs::read(root.join("refile")).unwrap(), b"again");
    assert_eq!(xattr(&root.join("etc"), "trusted.overlay.opaque"), None);
    assert!(!root.join(".wh..wh.plnk").exists());
    let (one, two) = (meta(root, "aufs/one"), meta(root, "aufs/two"));
    assert_eq!((one.ino(), one.nlink()), (two.ino(), 2));
    assert_eq!(fs::read(root.join("aufs/two")).unwrap(), b"aufs");
}

#[test]
fn overlay_merges_layer_images() {
    let mut lower = Layer::default();
    lower
        .file("a/keep", b"kept")
        .file("a/gone", b"hidden")
        .file("o/lower", b"lower only")
        .dir("o/sub", 0o755)
        .file("top", b"lower top");
    let mut upper = Layer::default();
    upper
        .file("a/.wh.gone", b"")
        .file("o/.wh..wh..opq", b"")
        .file("o/upper", b"upper only")
        .file("top", b"upper top");
    let lower = write_image(&lower.bytes());
    let upper = write_image(&upper.bytes());
    if !can_mount() {
        return;
    }
    let (l, u) = (Mount::erofs(&lower.path), Mount::erofs(&upper.path));
    let merged = Mount::overlay(&[u.path(), l.path()]);
    let root = merged.path();
    assert_eq!(fs::read(root.join("a/keep")).unwrap(), b"kept");
    assert!(
        !root.join("a/gone").exists(),
        "the whiteout hides the lower file"
    );
    assert_eq!(fs::read(root.join("top")).unwrap(), b"upper top");
    let mut o: Vec<String> = fs::read_dir(root.join("o"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    o.sort();
    assert_eq!(
        o,
        ["upper"],
        "the opaque directory hides the lower children"
    );
    drop(merged);
}

#[test]
fn images_are_deterministic() {
    let mut layer = Layer::default();
    layer.file("a/b", b"x").symlink("c", "a/b").dir("d", 0o700);
    let tar = layer.bytes();
    let (one, two) = (write_image(&tar), write_image(&tar));
    assert_eq!(fs::read(one.path).unwrap(), fs::read(two.path).unwrap());
}
