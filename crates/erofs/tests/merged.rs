//! Merged images of layer stacks, loop-mounted and compared with two oracles: overlayfs of
//! the layers' own images, and the rootfs assembly's rule (the `whiteout` crate's stack
//! says which layer provides each path; that layer's image says what is there).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{
    Attrs, Layer, Mount, assert_same_tree, can_mount, fsck, seen, snapshot, try_write_merged,
    write_image, write_merged,
};
use erofs::{Error, ErrorKind, Limit};
use tar::EntryType;
use whiteout::{EntryKind, LayerEntry, Stack};

fn at(mode: u32, uid: u64, mtime: u64) -> Attrs {
    Attrs {
        mode,
        uid,
        gid: uid + 1,
        mtime,
    }
}

/// Whiteouts of files and directories, opaque directories re-filled before and after the
/// marker, replacements of every kind, hard links, devices, xattrs. Every directory an
/// upper layer touches is listed, as real layers do (an implied one differs between the
/// oracles, see `implied_directories_keep_the_lower_metadata`).
fn stack_everything() -> Vec<Vec<u8>> {
    let mut l0 = Layer::default();
    l0.pax(&[("SCHILY.xattr.user.a", b"one")])
        .dir_with("etc", &at(0o750, 0, 100))
        .file("etc/passwd", b"root:x:0:0\n")
        .file_with("etc/shadow", b"secret", &at(0o600, 0, 101))
        .hard_link("etc/passwd.lnk", "etc/passwd")
        .dir("usr", 0o755)
        .dir("usr/bin", 0o755)
        .file_with("usr/bin/sh", b"#!sh", &at(0o755, 0, 102))
        .symlink("usr/bin/bash", "sh")
        .dir_with("opq", &at(0o700, 7, 103))
        .file("opq/a", b"lower a")
        .dir("opq/sub", 0o755)
        .file("opq/sub/deep", b"deep")
        .dir("opq2", 0o755)
        .file("opq2/x", b"x")
        .dir("var", 0o755)
        .dir("var/log", 0o755)
        .file("var/log/old", &[9; 10_000])
        .file("f2d", b"file, then a directory")
        .dir("d2f", 0o755)
        .file("d2f/child", b"c")
        .file("d2f/sub/x", b"x")
        .symlink("s", "target1")
        .dir("data", 0o755)
        .file("data/h1", b"linked")
        .hard_link("data/h2", "data/h1")
        .dir("dev", 0o755)
        .node("dev/null", EntryType::Char, 1, 3)
        .node("dev/sda", EntryType::Block, 8, 0)
        .node("fifo", EntryType::Fifo, 0, 0)
        .file("keep", b"lower keep")
        .pax(&[
            ("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02cap"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("mtime", b"1700000000.5"),
        ])
        .file("ping", b"ping");
    let mut l1 = Layer::default();
    l1.pax(&[("SCHILY.xattr.user.b", b"two")])
        .dir_with("etc", &at(0o755, 3, 200))
        .file("etc/.wh.shadow", b"")
        .dir_with("opq", &at(0o711, 8, 201))
        .file("opq/new1", b"before the marker")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new2", b"after the marker")
        .dir("opq/sub", 0o700)
        .file("opq/sub/n", b"n")
        .dir("f2d", 0o751)
        .file("f2d/inside", b"i")
        .file("d2f", b"now a file")
        .symlink("s", "target2")
        .dir("data", 0o755)
        .file("data/.wh.h2", b"")
        .dir("usr", 0o755)
        .dir("usr/bin", 0o755)
        .file_with("usr/bin/sh", b"#!new sh", &at(0o755, 0, 202))
        .file("usr/bin/newtool", b"tool")
        .dir("var", 0o755)
        .file("var/.wh.log", b"")
        .file(".wh.fifo", b"")
        .dir("dev", 0o755)
        .node("dev/null", EntryType::Char, 1, 5);
    let mut l2 = Layer::default();
    l2.file(".wh.etc", b"")
        .dir_with("etc", &at(0o700, 0, 300))
        .file("etc/hosts", b"127.0.0.1 localhost\n")
        .dir("opq2", 0o755)
        .file("opq2/.wh..wh..opq", b"")
        .file("keep", b"upper keep")
        .file(".wh.keep", b"")
        .file(".wh.nothing", b"")
        .dir("deep", 0o755);
    let mut path = String::from("deep");
    for i in 0..40 {
        path.push_str(&format!("/{i}"));
        l2.dir(&path, 0o755);
    }
    l2.file(&format!("{path}/bottom"), b"bottom");
    vec![l0.bytes(), l1.bytes(), l2.bytes()]
}

/// An opaque root, and a layer that replaces everything. Overlayfs of the layers' images
/// differs here: it never takes a layer's root as opaque.
fn stack_opaque_root() -> Vec<Vec<u8>> {
    let mut l0 = Layer::default();
    l0.dir("a", 0o755).file("a/b", b"b").file("c", b"c");
    let mut l1 = Layer::default();
    l1.file("d", b"d").file(".wh..wh..opq", b"").file("e", b"e");
    let mut l2 = Layer::default();
    l2.dir("d", 0o700).file("d/x", &[1; 70_000]);
    vec![l0.bytes(), l1.bytes(), l2.bytes()]
}

/// Four layers over one deep tree, each replacing or hiding part of the one below.
fn stack_deep() -> Vec<Vec<u8>> {
    let mut layers = Vec::new();
    for layer in 0..4u8 {
        let mut l = Layer::default();
        let mut path = String::new();
        for depth in 0..12 {
            path.push_str(if path.is_empty() { "t" } else { "/t" });
            l.dir_with(&path, &at(0o755, u64::from(layer), 1000 + depth));
            l.file(&format!("{path}/f{layer}"), &[layer; 100]);
            match (layer, depth % 4) {
                (1, 0) => {
                    l.file(&format!("{path}/.wh.f0"), b"");
                }
                (2, 1) => {
                    l.file(&format!("{path}/.wh..wh..opq"), b"");
                }
                (3, 2) => {
                    l.file(&format!("{path}/f1"), b"replaced");
                }
                _ => {}
            }
        }
        layers.push(l.bytes());
    }
    layers
}

fn mount_all(layers: &[Vec<u8>]) -> (Vec<common::Image>, Vec<Mount>) {
    let images: Vec<common::Image> = layers.iter().map(|l| write_image(l)).collect();
    let mounts = images.iter().map(|i| Mount::erofs(&i.path)).collect();
    (images, mounts)
}

/// Oracle 1: overlayfs of the layers' own images, read-only (lowerdir=top:…:bottom).
fn assert_same_as_overlay(layers: &[Vec<u8>], what: &str) {
    let merged = write_merged(layers);
    fsck(&merged.path);
    if !can_mount() {
        return;
    }
    let (_images, mounts) = mount_all(layers);
    let lowers: Vec<&Path> = mounts.iter().rev().map(|m| m.path()).collect();
    let overlay = Mount::overlay(&lowers);
    let m = Mount::erofs(&merged.path);
    let (got, want) = (snapshot(m.path()), snapshot(overlay.path()));
    assert_same_tree(&got, &want, what);
    for (path, names) in &got.links {
        assert_eq!(
            got.nlink[path],
            names.len() as u64,
            "{what}: nlink of {path}"
        );
    }
    drop(overlay);
}

#[test]
fn equals_overlayfs_of_the_layer_images() {
    assert_same_as_overlay(&stack_everything(), "everything");
    // Not `stack_opaque_root`: overlayfs ignores the opaque xattr on a layer's root, where
    // the OCI spec (and the whiteout crate, and the rootfs assembly) hide all below.
    assert_same_as_overlay(&stack_deep(), "deep");
    assert_same_as_overlay(&stack_everything()[..2], "everything, two layers");
}

#[test]
fn what_is_removed_is_gone_and_counted_dead() {
    let merged = write_merged(&stack_everything());
    let s = &merged.summary;
    // var/log/old, etc/shadow, opq/a, opq/sub/deep, d2f/*, the first sh, keep, …
    assert!(
        s.dead_bytes > 10_000 && s.dead_bytes < s.data_bytes,
        "{s:?}"
    );
    if !can_mount() {
        return;
    }
    let m = Mount::erofs(&merged.path);
    let root = m.path();
    for gone in [
        "etc/passwd",
        "etc/shadow",
        "opq/a",
        "opq/sub/deep",
        "var/log",
        "fifo",
        "d2f/child",
        "data/h2",
    ] {
        assert!(fs::symlink_metadata(root.join(gone)).is_err(), "{gone}");
    }
    let mut opq: Vec<String> = fs::read_dir(root.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    opq.sort();
    assert_eq!(opq, ["new1", "new2", "sub"]);
    assert_eq!(fs::read(root.join("keep")).unwrap(), b"upper keep");
    let h1 = fs::symlink_metadata(root.join("data/h1")).unwrap();
    assert_eq!(h1.nlink(), 1, "whiting out one name drops the count");
    assert_eq!(fs::read(root.join("data/h1")).unwrap(), b"linked");
    assert!(common::xattrs(&root.join("opq")).is_empty());
    assert_eq!(common::xattr(root, "trusted.overlay.opaque"), None);
}

/// The whiteout crate's explicit entries of a layer tar: what extracting it in order leaves
/// (each path once, markers included), as the layer extractor reports them.
fn entries(tar: &[u8]) -> Vec<LayerEntry> {
    let mut left: BTreeMap<String, EntryKind> = BTreeMap::new();
    let mut archive = tar::Archive::new(tar);
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let raw = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let path: Vec<&str> = raw
            .split('/')
            .filter(|n| !n.is_empty() && *n != ".")
            .collect();
        let path = path.join("/");
        if path.is_empty() {
            continue;
        }
        let kind = if e.header().entry_type() == EntryType::Directory {
            EntryKind::Dir
        } else {
            EntryKind::NonDir
        };
        let merges = kind == EntryKind::Dir && left.get(&path) == Some(&EntryKind::Dir);
        if !merges {
            let prefix = format!("{path}/");
            left.retain(|q, _| !q.starts_with(&prefix));
        }
        left.insert(path, kind);
    }
    left.into_iter()
        .map(|(p, k)| LayerEntry::new(p, k))
        .collect()
}

/// Oracle 2: the rootfs assembly's rule. The whiteout crate's stack names the layer that
/// provides each path; that layer's own image holds what must be there.
fn assert_same_as_assembly(layers: &[Vec<u8>], what: &str) {
    let merged = write_merged(layers);
    if !can_mount() {
        return;
    }
    let mut stack = Stack::new();
    for l in layers {
        stack.push(&entries(l)).unwrap();
    }
    let (_images, mounts) = mount_all(layers);
    let m = Mount::erofs(&merged.path);
    let got = snapshot(m.path());
    let want: Vec<String> = stack
        .entries()
        .map(|(p, _, _)| p.to_str().unwrap().to_owned())
        .collect();
    let got_names: Vec<String> = got
        .entries
        .keys()
        .filter(|k| !k.is_empty())
        .cloned()
        .collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got_names, want_sorted, "{what}: the same names");
    for (path, kind, provider) in stack.entries() {
        let seen_there = seen(&mounts[provider].path().join(path));
        let p = path.to_str().unwrap();
        assert_eq!(
            got.entries[p], seen_there,
            "{what}: {p} from layer {provider}"
        );
        assert_eq!(seen_there.kind == 'd', kind == EntryKind::Dir);
    }
}

#[test]
fn equals_the_rootfs_assembly() {
    assert_same_as_assembly(&stack_everything(), "everything");
    assert_same_as_assembly(&stack_opaque_root(), "opaque root");
    assert_same_as_assembly(&stack_deep(), "deep");
}

#[test]
fn implied_directories_keep_the_lower_metadata() {
    let mut l0 = Layer::default();
    l0.pax(&[("SCHILY.xattr.user.x", b"1")])
        .dir_with("usr", &at(0o700, 5, 50))
        .dir_with("usr/lib", &at(0o750, 6, 51))
        .dir_with("o", &at(0o711, 7, 52))
        .file("o/lower", b"l")
        .file("a", b"a file");
    let mut l1 = Layer::default();
    l1.file("usr/lib/new", b"n")
        .file("o/.wh..wh..opq", b"")
        .file("a/.wh.b", b"")
        .dir_with("usr/share", &at(0o755, 0, 60));
    let layers = vec![l0.bytes(), l1.bytes()];
    assert_same_as_assembly(&layers, "implied");
    if !can_mount() {
        return;
    }
    let merged = write_merged(&layers);
    let m = Mount::erofs(&merged.path);
    let usr = seen(&m.path().join("usr"));
    assert_eq!((usr.mode, usr.uid, usr.mtime.0), (0o40700, 5, 50));
    assert_eq!(usr.xattrs, [("user.x".to_string(), b"1".to_vec())]);
    assert_eq!(seen(&m.path().join("o")).mode, 0o40711);
    assert_eq!(fs::read_dir(m.path().join("o")).unwrap().count(), 0);
    // An implied directory over a lower file replaces it.
    assert_eq!(seen(&m.path().join("a")).mode, 0o40755);
}

#[test]
fn root_metadata_comes_from_the_top_layer_listing_it() {
    let mut l0 = Layer::default();
    l0.dir_with(".", &at(0o700, 9, 77)).file("x", b"x");
    let mut l1 = Layer::default();
    l1.file("y", b"y");
    let merged = write_merged(&[l0.bytes(), l1.bytes()]);
    if can_mount() {
        let m = Mount::erofs(&merged.path);
        let root = seen(m.path());
        assert_eq!((root.mode, root.uid, root.mtime.0), (0o40700, 9, 77));
    }
    let mut l2 = Layer::default();
    l2.dir_with("./", &at(0o755, 1, 88));
    let merged = write_merged(&[l0.bytes(), l1.bytes(), l2.bytes()]);
    if can_mount() {
        let m = Mount::erofs(&merged.path);
        let root = seen(m.path());
        assert_eq!((root.mode, root.uid, root.mtime.0), (0o40755, 1, 88));
    }
}

#[test]
fn hard_links_reach_lower_layers() {
    let mut l0 = Layer::default();
    l0.dir("bin", 0o755)
        .file("bin/busybox", &[7; 9000])
        .file("gone", b"g");
    let mut l1 = Layer::default();
    l1.hard_link("bin/sh", "bin/busybox")
        .hard_link("bin/ls", "/bin/busybox")
        .hard_link("kept", "gone")
        .file(".wh.gone", b"");
    let mut l2 = Layer::default();
    l2.dir("bin", 0o755).file("bin/.wh.busybox", b"");
    let merged = write_merged(&[l0.bytes(), l1.bytes(), l2.bytes()]);
    assert_eq!(
        merged.summary.dead_bytes, 0,
        "every file is still reachable"
    );
    fsck(&merged.path);
    if !can_mount() {
        return;
    }
    let m = Mount::erofs(&merged.path);
    let root = m.path();
    assert!(!root.join("bin/busybox").exists());
    let (sh, ls) = (
        fs::symlink_metadata(root.join("bin/sh")).unwrap(),
        fs::symlink_metadata(root.join("bin/ls")).unwrap(),
    );
    assert_eq!((sh.ino(), sh.nlink()), (ls.ino(), 2));
    assert_eq!(fs::read(root.join("bin/ls")).unwrap(), [7; 9000]);
    assert!(!root.join("gone").exists());
    assert_eq!(fs::read(root.join("kept")).unwrap(), b"g");
    assert_eq!(fs::symlink_metadata(root.join("kept")).unwrap().nlink(), 1);
}

#[test]
fn hard_links_to_what_the_layer_hid_are_refused() {
    let mut l0 = Layer::default();
    l0.dir("d", 0o755)
        .file("d/f", b"f")
        .dir("o", 0o755)
        .file("o/f", b"f");
    let lower = l0.bytes();
    let cases: [(&str, Layer); 4] = [
        ("after a whiteout of the target", {
            let mut l = Layer::default();
            l.file("d/.wh.f", b"").hard_link("l", "d/f");
            l
        }),
        ("after a whiteout of its parent", {
            let mut l = Layer::default();
            l.file(".wh.d", b"").hard_link("l", "d/f");
            l
        }),
        ("after an opaque marker", {
            let mut l = Layer::default();
            l.file("o/.wh..wh..opq", b"").hard_link("l", "o/f");
            l
        }),
        ("through a file of the layer", {
            let mut l = Layer::default();
            l.file("d", b"now a file").hard_link("l", "d/f");
            l
        }),
    ];
    for (what, mut upper) in cases {
        let e = try_write_merged(&[lower.clone(), upper.bytes()])
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(matches!(&e, Error::Layer { index: 1, .. }), "{what}: {e}");
        assert!(
            e.to_string().contains("no earlier layer left"),
            "{what}: {e}"
        );
    }
    let mut l1 = Layer::default();
    l1.hard_link("l", "d");
    let e = try_write_merged(&[lower.clone(), l1.bytes()])
        .err()
        .unwrap();
    assert!(e.to_string().contains("directory"), "{e}");
}

#[test]
fn one_layer_without_markers_is_write_layer_byte_for_byte() {
    let mut l = Layer::default();
    l.dir("etc", 0o750)
        .file("etc/passwd", b"root")
        .hard_link("etc/again", "etc/passwd")
        .symlink("s", "etc")
        .node("null", EntryType::Char, 1, 3)
        .pax(&[("SCHILY.xattr.user.n", b"v")])
        .file("big", &[3; 20_000])
        .file("big", b"replaced");
    let tar = l.bytes();
    let merged = write_merged(std::slice::from_ref(&tar));
    let single = write_image(&tar);
    assert_eq!(
        fs::read(&merged.path).unwrap(),
        fs::read(&single.path).unwrap()
    );
    assert_eq!(merged.summary.dead_bytes, 20_000);
    assert_eq!(single.summary.dead_bytes, 20_000);
    let empty = write_merged(&[]);
    assert_eq!(empty.summary.dirs, 1);
}

#[test]
fn more_layers_than_the_cap_are_refused() {
    let out = tempfile::tempfile().unwrap();
    let empty: Vec<&[u8]> = vec![&[]; erofs::MAX_LAYERS];
    let summary = erofs::write_merged(empty.clone(), &out, &erofs::Options::default()).unwrap();
    assert_eq!(summary.layers, erofs::MAX_LAYERS as u64);
    let out = tempfile::tempfile().unwrap();
    let mut too_many = empty;
    too_many.push(&[]);
    let e = erofs::write_merged(too_many, &out, &erofs::Options::default()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Limit {
                limit: Limit::Layers,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("MAX_LAYERS"), "{e}");
}

#[test]
fn a_truncated_layer_is_named() {
    let mut l0 = Layer::default();
    l0.file("a", b"a");
    let mut l1 = Layer::default();
    l1.file("b", &[5; 5000]).file("c", b"c");
    let (l0, l1) = (l0.bytes(), l1.bytes());
    let e = try_write_merged(&[l0.clone(), l1[..512 + 3000].to_vec(), l0.clone()])
        .err()
        .unwrap();
    assert!(matches!(&e, Error::Layer { index: 1, .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(matches!(e.innermost(), Error::Invalid { .. }), "{e}");
    assert!(e.to_string().starts_with("layer 1 of the image"), "{e}");
    assert!(
        e.to_string().contains("ends within the entry's data"),
        "{e}"
    );
    for cut in (0..l1.len()).step_by(61) {
        let _ = try_write_merged(&[l0.clone(), l1[..cut].to_vec()]);
    }
    let e = try_write_merged(&[l0.clone(), l0.clone(), vec![0x41; 2000]])
        .err()
        .unwrap();
    assert!(matches!(&e, Error::Layer { index: 2, .. }), "{e}");
}

#[test]
fn caps_count_all_layers_together() {
    let mut l = Layer::default();
    l.file("f", &[1; 6000]);
    let tar = l.bytes();
    let mut options = erofs::Options::default();
    options.max_data_bytes = 10_000;
    let out = tempfile::tempfile().unwrap();
    let e = erofs::write_merged([&tar[..], &tar[..]], &out, &options).unwrap_err();
    assert!(matches!(&e, Error::Layer { index: 1, .. }), "{e}");
    assert!(
        matches!(
            e.innermost(),
            Error::Limit {
                limit: Limit::DataBytes,
                ..
            }
        ),
        "{e}"
    );
    // Whiteouts do not give data back: it was written already.
    let mut wh = Layer::default();
    let wh = wh.file(".wh.f", b"").bytes();
    let out = tempfile::tempfile().unwrap();
    let e = erofs::write_merged([&tar[..], &wh[..], &tar[..]], &out, &options).unwrap_err();
    assert!(matches!(&e, Error::Layer { index: 2, .. }), "{e}");
    let out = tempfile::tempfile().unwrap();
    let s = erofs::write_merged([&tar[..], &wh[..]], &out, &options).unwrap();
    assert_eq!((s.data_bytes, s.dead_bytes, s.files), (6000, 6000, 0));
}

#[test]
fn entry_errors_name_their_layer() {
    let mut ok = Layer::default();
    ok.file("f", b"f");
    let mut bad = Layer::default();
    bad.file("f/g", b"beneath a file of the layer");
    let ok = ok.bytes();
    // Beneath a file of a lower layer is fine: the layer's implied directory replaces it.
    let image = write_merged(&[ok.clone(), bad.bytes()]);
    assert_eq!(image.summary.files, 1);
    let mut bad = Layer::default();
    bad.file("x", b"x").file("x/y", b"y");
    let e = try_write_merged(&[ok.clone(), ok.clone(), bad.bytes()])
        .err()
        .unwrap();
    match e {
        Error::Layer { index: 2, source } => {
            assert!(
                matches!(*source, Error::Entry { ref entry, .. } if entry == "x/y"),
                "{source}"
            );
        }
        other => panic!("{other}"),
    }
}
