//! `Stack` against the kernel's overlayfs (root only).
//!
//! Each layer is written to disk in overlay format: files hold the index of their
//! layer, a whiteout becomes a 0/0 character device (or, where the layer has a
//! directory of that name, the opaque xattr on it), an opaque marker becomes
//! `trusted.overlay.opaque=y`. The read-only overlay mount of all layers must then
//! show exactly the paths and kinds of `Stack::entries()`, and each file must come
//! from the layer `Stack` names. Overlay cannot reveal which layer a directory's
//! metadata came from, so directories are compared by kind only.

// Helpers outside `#[test]` fns panic on purpose: a panic is how a test reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use rustix::fs::{CWD, FileType, Mode, XattrFlags};
use rustix::mount::{MountFlags, UnmountFlags};
use whiteout::{EntryKind, LayerEntry, Stack};

/// `None` for a directory, `Some(layer)` for a file written by that layer.
type Seen = BTreeMap<PathBuf, Option<usize>>;

fn is_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: mounting overlayfs needs root");
    false
}

/// Unmounts on drop, so a failing assertion does not leave the mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if rustix::mount::unmount(&self.0, UnmountFlags::empty()).is_err() {
            let _ = rustix::mount::unmount(&self.0, UnmountFlags::DETACH);
        }
    }
}

fn set_opaque(dir: &Path) {
    rustix::fs::lsetxattr(dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setting the opaque xattr on {dir:?}: {e}"));
}

/// Writes one layer in overlay format under `root`, decoding markers by hand.
fn materialise(entries: &[LayerEntry], index: usize, root: &Path) {
    let mut listed: Vec<&LayerEntry> = Vec::new();
    for entry in entries.iter().rev() {
        if listed.iter().all(|seen| seen.path != entry.path) {
            listed.push(entry);
        }
    }
    listed.sort_by_key(|e| e.path.components().count());
    let (markers, content): (Vec<&LayerEntry>, Vec<&LayerEntry>) = listed
        .into_iter()
        .partition(|e| e.path.file_name().unwrap().as_bytes().starts_with(b".wh."));
    for entry in &content {
        let path = root.join(&entry.path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        match entry.kind {
            EntryKind::Dir => fs::create_dir_all(&path).unwrap(),
            EntryKind::NonDir => fs::write(&path, index.to_string()).unwrap(),
        }
    }
    for marker in &markers {
        fs::create_dir_all(root.join(marker.path.parent().unwrap())).unwrap();
    }
    for marker in &markers {
        let dir = root.join(marker.path.parent().unwrap());
        let name = marker.path.file_name().unwrap().to_str().unwrap();
        if name == ".wh..wh..opq" {
            set_opaque(&dir);
            continue;
        }
        let target = dir.join(name.strip_prefix(".wh.").unwrap());
        match fs::symlink_metadata(&target) {
            // The layer's own directory must not merge with what it whites out.
            Ok(meta) if meta.is_dir() => set_opaque(&target),
            // The layer's own file hides what is below by itself.
            Ok(_) => {}
            Err(_) => {
                rustix::fs::mknodat(CWD, &target, FileType::CharacterDevice, Mode::empty(), 0)
                    .unwrap_or_else(|e| panic!("mknod {target:?}: {e}"))
            }
        }
    }
}

fn walk(dir: &Path, root: &Path, seen: &mut Seen) {
    for child in fs::read_dir(dir).unwrap() {
        let path = child.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().to_owned();
        // A directory found in one layer only is read straight from that layer, so
        // readdir lists its whiteout devices; lookup then hides them.
        let meta = match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            meta => meta.unwrap(),
        };
        if meta.is_dir() {
            seen.insert(rel, None);
            walk(&path, root, seen);
        } else {
            assert!(
                meta.is_file(),
                "{rel:?} shows through the overlay as {:?}",
                meta.file_type()
            );
            let layer = fs::read_to_string(&path).unwrap().parse().unwrap();
            seen.insert(rel, Some(layer));
        }
    }
}

/// Mounts the layers with overlayfs and reads back what the merged view shows.
fn overlay(layers: &[Vec<LayerEntry>]) -> Seen {
    let work = tempfile::tempdir().unwrap();
    let mut lowers = Vec::new();
    for (index, entries) in layers.iter().enumerate() {
        let dir = work.path().join(format!("layer{index}"));
        fs::create_dir(&dir).unwrap();
        materialise(entries, index, &dir);
        lowers.push(dir);
    }
    // A read-only overlay needs two lower layers; an empty one at the bottom changes nothing.
    let empty = work.path().join("empty");
    fs::create_dir(&empty).unwrap();
    lowers.insert(0, empty);
    let lowerdir: Vec<String> = lowers
        .iter()
        .rev()
        .map(|d| d.to_str().unwrap().to_owned())
        .collect();
    let data = CString::new(format!("lowerdir={}", lowerdir.join(":"))).unwrap();
    let merged = work.path().join("merged");
    fs::create_dir(&merged).unwrap();
    rustix::mount::mount(
        "overlay",
        &merged,
        "overlay",
        MountFlags::RDONLY,
        data.as_c_str(),
    )
    .unwrap_or_else(|e| panic!("mounting overlayfs on {merged:?} ({data:?}): {e}"));
    let guard = Mounted(merged);
    let mut seen = Seen::new();
    walk(&guard.0, &guard.0, &mut seen);
    seen
}

fn check(layers: &[Vec<LayerEntry>]) {
    for layer in layers {
        assert!(
            !common::is_contradictory(layer),
            "generator made an invalid layer: {layer:?}"
        );
    }
    let mut stack = Stack::new();
    for layer in layers {
        stack.push(layer).unwrap();
    }
    let expected: Seen = stack
        .entries()
        .map(|(path, kind, layer)| {
            (
                path.to_owned(),
                (kind == EntryKind::NonDir).then_some(layer),
            )
        })
        .collect();
    assert_eq!(
        overlay(layers),
        expected,
        "layers (bottom first): {layers:#?}"
    );
}

fn d(path: &str) -> LayerEntry {
    LayerEntry::dir(path)
}

fn f(path: &str) -> LayerEntry {
    LayerEntry::non_dir(path)
}

#[test]
fn fixed_stacks_match_overlayfs() {
    if !is_root() {
        return;
    }
    let stacks: Vec<Vec<Vec<LayerEntry>>> = vec![
        // Whiteouts of a file, a directory, a missing name; re-creation above.
        vec![
            vec![
                d("etc"),
                f("etc/passwd"),
                f("etc/hosts"),
                f("usr/lib/libc.so"),
                f("usr/bin/sh"),
            ],
            vec![
                f("etc/.wh.hosts"),
                f("usr/.wh.lib"),
                f(".wh.nothing"),
                f("usr/bin/ls"),
            ],
            vec![f("usr/lib/libm.so"), f("etc/hosts")],
        ],
        // Opaque directories, with and without entries of their own layer.
        vec![
            vec![f("a/x"), f("a/y/z"), f("b/x"), f("c")],
            vec![
                f("a/.wh..wh..opq"),
                f("b/.wh..wh..opq"),
                f("b/new"),
                f("c/.wh..wh..opq"),
            ],
        ],
        // A whiteout together with the same name in its own layer.
        vec![
            vec![f("f"), d("g"), f("g/old"), f("h")],
            vec![
                f(".wh.f"),
                f("f"),
                f(".wh.g"),
                d("g"),
                f("g/new"),
                f(".wh.h"),
                f("h/sub"),
            ],
        ],
        // Kind changes both ways, implied parents over non-directories.
        vec![
            vec![f("a/b/c"), f("x"), f("y")],
            vec![f("a"), f("x/inner"), d("y")],
            vec![f("a/b/d"), f("x")],
        ],
    ];
    for layers in &stacks {
        check(layers);
    }
}

/// Root-level opaque markers are left out: overlayfs ignores the opaque xattr on a
/// layer's root directory, while the OCI rule hides every lower entry.
#[test]
fn random_stacks_match_overlayfs() {
    if !is_root() {
        return;
    }
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let result = TestRunner::new(config).run(&common::stack(false), |layers| {
        check(&layers);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
