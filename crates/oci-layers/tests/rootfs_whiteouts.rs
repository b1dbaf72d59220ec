//! Whiteout semantics through the whole pipeline: layer trees tarred by the layout builder,
//! imported into a store, assembled into a rootfs on the real filesystem, checked path by path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rootfs_support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use oci_layers::rootfs::Method;
use rootfs_support::{
    DOC_DIR_MTIME, Kind, Node, PASSWD_MTIME, T1, T2, T3, THING_MTIME, XATTRS, import, is_root,
    rich_layout, snapshot, whiteout_names,
};

fn content(tree: &BTreeMap<String, Node>, root: &Path, rel: &str) -> String {
    assert_eq!(tree[rel].kind, Kind::File, "{rel}");
    std::fs::read_to_string(root.join(rel)).unwrap()
}

fn children(tree: &BTreeMap<String, Node>, dir: &str) -> Vec<String> {
    let prefix = format!("{dir}/");
    tree.keys()
        .filter_map(|p| p.strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

/// Checks every whiteout rule and every kind of entry in the rich image's rootfs at `root`.
fn check_rich_rootfs(root: &Path) {
    let tree = snapshot(root);
    assert_eq!(
        whiteout_names(&tree),
        Vec::<&String>::new(),
        "no marker survives"
    );

    // A file whiteout removes the file; siblings stay, a later layer's override wins.
    assert!(!tree.contains_key("etc/old.conf"));
    assert_eq!(
        content(&tree, root, "etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    assert_eq!(
        content(&tree, root, "etc/hosts"),
        "127.0.0.1 localhost boxlite\n"
    );
    assert_eq!(tree["etc/hosts"].mode, 0o600);

    // A directory whiteout removes the whole subtree; a later layer re-creates the directory
    // with only its own content.
    assert_eq!(children(&tree, "usr/share/doc"), ["new", "new/README"]);
    assert_eq!(tree["usr/share/doc"].kind, Kind::Dir);
    assert_eq!(tree["usr/share/doc"].mtime, (DOC_DIR_MTIME, 0));
    assert_eq!(
        content(&tree, root, "usr/share/doc/new/README"),
        "new doc\n"
    );
    assert!(!tree.contains_key("var/cache/apt"));
    // A whiteout hides only lower layers: what its own layer adds at that path stays.
    assert_eq!(children(&tree, "usr/share/man"), ["new.1"]);
    assert_eq!(children(&tree, "var/cache"), Vec::<String>::new());
    assert!(
        !tree.contains_key("gone-ro"),
        "a read-only directory whited out"
    );

    // An opaque directory hides everything below it but keeps its own layer's entries.
    assert_eq!(
        children(&tree, "opt/app"),
        ["new1", "newdir", "newdir/new2"]
    );
    assert_eq!(content(&tree, root, "opt/app/newdir/new2"), "new2\n");

    // Removed in layer 2, re-created in layer 3 with new content, mode and mtime.
    assert_eq!(content(&tree, root, "var/lib/thing"), "v3\n");
    assert_eq!(tree["var/lib/thing"].mode, 0o600);
    assert_eq!(tree["var/lib/thing"].mtime, (THING_MTIME, 0));

    // A file replacing a directory (its children gone) and a directory replacing a file.
    assert_eq!(content(&tree, root, "data/was-dir"), "now a file\n");
    assert_eq!(children(&tree, "data/was-dir"), Vec::<String>::new());
    assert_eq!(tree["data/was-file"].kind, Kind::Dir);
    assert_eq!(children(&tree, "data/was-file"), ["inner"]);
    assert_eq!(content(&tree, root, "data/was-file/inner"), "now a dir\n");

    // Hard links of one layer still share an inode; the whited-out third link is gone.
    assert!(!tree.contains_key("hard/c"));
    let (a, b) = (&tree["hard/a"], &tree["hard/b"]);
    assert_eq!(a.link_group.as_deref(), Some("hard/a"));
    assert_eq!(b.link_group.as_deref(), Some("hard/a"));
    assert_eq!((a.nlink, b.nlink), (2, 2));
    let ino = |rel: &str| std::fs::symlink_metadata(root.join(rel)).unwrap().ino();
    assert_eq!(ino("hard/a"), ino("hard/b"));
    assert_eq!(content(&tree, root, "hard/b"), "shared inode\n");

    // Symlinks are kept as links, never followed: self-referencing and dangling ones too.
    let link = |rel: &str| {
        assert_eq!(tree[rel].kind, Kind::Symlink, "{rel}");
        tree[rel].target.clone().unwrap()
    };
    assert_eq!(link("links/thunar"), Path::new("thunar"));
    assert_eq!(link("links/dangling"), Path::new("/nonexistent/target"));
    assert_eq!(link("links/dangling-rel"), Path::new("../missing/file"));
    assert_eq!(link("links/to-passwd"), Path::new("../etc/passwd"));
    assert_eq!(tree["links/thunar"].mtime, (T2, 0));

    // Modes with special bits, a fifo, xattrs, an empty file, a multi-block file.
    assert_eq!(tree["usr/bin/su"].mode, 0o4755);
    assert_eq!(tree["usr/bin/tool"].mode, 0o755);
    assert_eq!(tree["tmp"].kind, Kind::Dir);
    assert_eq!(tree["tmp"].mode, 0o1777);
    assert_eq!(tree["run/fifo"].kind, Kind::Fifo);
    assert_eq!(tree["run/fifo"].mode, 0o600);
    let want: BTreeMap<String, Vec<u8>> = XATTRS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    assert_eq!(tree["xattr/file"].xattrs, want);
    assert_eq!(tree["ro"].mode, 0o555);
    assert_eq!(tree["ro/sub"].mode, 0o500);
    assert_eq!(tree["ro/inside"].mode, 0o444);
    assert_eq!(content(&tree, root, "ro/sub/deeper"), "deeper\n");
    assert_eq!(tree["empty"].size, 0);
    assert_eq!(tree["empty"].mode, 0o600);
    assert_eq!(
        std::fs::read(root.join("big/blob")).unwrap(),
        rootfs_support::patterned(300_000)
    );

    // mtimes: each path carries those of the layer that provides it, directories included
    // (written after their children), explicit ones exactly.
    assert_eq!(tree["etc/passwd"].mtime, (PASSWD_MTIME, 0));
    assert_eq!(tree["etc"].mtime, (T2, 0), "layer 2 lists etc/");
    assert_eq!(
        tree["usr/bin"].mtime,
        (T1, 0),
        "only layer 1 lists usr/bin/"
    );
    assert_eq!(tree["usr/bin/su"].mtime, (T1, 0));
    assert_eq!(tree["opt/app"].mtime, (T2, 0));
    assert_eq!(tree["usr/share/doc/new"].mtime, (T3, 0));
    assert_eq!(tree["var/lib"].mtime, (T3, 0));
    assert_eq!(tree["run/fifo"].mtime, (T1, 0));
    assert_eq!(tree["hard/a"].mtime, (T1, 0));

    if is_root() {
        assert_eq!(tree["srv"].mode, 0o2775);
        assert_eq!((tree["srv"].uid, tree["srv"].gid), (1000, 1001));
        assert_eq!((tree["srv/owned"].uid, tree["srv/owned"].gid), (1000, 1001));
        assert_eq!(tree["srv/owned"].mode, 0o640);
        assert_eq!(tree["dev/null"].kind, Kind::Char);
        assert_eq!(tree["dev/null"].rdev, rustix::fs::makedev(1, 3));
        assert_eq!(tree["usr/bin/su"].uid, 0);
        assert_eq!(tree["private"].mode, 0o700);
        assert_eq!(tree["private/secret"].mode, 0o000);
    }
}

#[test]
fn every_whiteout_rule_holds_in_the_assembled_rootfs() {
    let work = tempfile::tempdir().unwrap();
    let (layout, built) = rich_layout(work.path());
    let (store, record) = import(&work.path().join("home"), &layout, "rich");
    assert_eq!(record.layers.len(), 3);
    assert_eq!(record.manifest_digest, built.manifest.digest);

    let dest = work.path().join("rootfs");
    let report = store.unpack("rich", &dest, false).unwrap();
    assert_eq!(report.method, Method::CopyStack, "{report:?}");
    assert_eq!(report.fallback_reason, None);
    assert_eq!((report.layers, report.extracted), (3, 3));
    check_rich_rootfs(&dest);

    // What the copy reports matches what is there: one copy per surviving path.
    let tree = snapshot(&dest);
    let count = |k: Kind| tree.values().filter(|n| n.kind == k).count() as u64;
    assert_eq!(report.copy.symlinks, count(Kind::Symlink));
    assert_eq!(report.copy.hardlinks, 1, "hard/b links to hard/a");
    assert_eq!(report.copy.files + report.copy.hardlinks, count(Kind::File));
    assert_eq!(report.copy.dirs, count(Kind::Dir));
}

/// The extraction-based fallback, forced by a cache whose every lookup fails, obeys the same rules.
#[test]
fn the_extraction_fallback_obeys_the_same_rules() {
    let work = tempfile::tempdir().unwrap();
    let (layout, _) = rich_layout(work.path());
    let home = work.path().join("home");
    let (store, _) = import(&home, &layout, "rich");
    // Damage the cache where lookups go: every lookup fails, so the copy path cannot run.
    std::fs::create_dir_all(home.join("layers")).unwrap();
    std::fs::write(home.join("layers/sha256"), b"not a directory").unwrap();

    let dest = work.path().join("rootfs");
    let report = store.unpack("rich", &dest, false).unwrap();
    assert_eq!(report.method, Method::ExtractStack, "{report:?}");
    assert!(report.fallback_reason.is_some());
    check_rich_rootfs(&dest);
    assert_eq!(
        rootfs_support::fallback_staging(work.path()),
        Vec::<String>::new()
    );
}

/// The same layer twice in one image (builders emit identical layers, e.g. two equal `COPY`s):
/// extracted once, and the upper copy wins over what lies between.
#[test]
fn a_layer_repeated_in_one_image_is_extracted_once_and_stacks_in_order() {
    let work = tempfile::tempdir().unwrap();
    let a = rootfs_support::Tree::new(work.path().join("a"));
    a.file("x", "from a\n", 0o644)
        .file("keep", "kept\n", 0o644)
        .stamp(T1);
    let b = rootfs_support::Tree::new(work.path().join("b"));
    b.file("x", "from b\n", 0o644)
        .whiteout("keep")
        .file("only-b", "b\n", 0o644)
        .stamp(T2);
    let layout = work.path().join("layout");
    oci_layers::LayoutBuilder::new()
        .layer_dir(&a.root, oci_layers::Compression::Gzip)
        .layer_dir(&b.root, oci_layers::Compression::Gzip)
        .layer_dir(&a.root, oci_layers::Compression::Gzip)
        .write_layout(&layout, "aba")
        .unwrap();
    let home = work.path().join("home");
    let (store, record) = import(&home, &layout, "aba");
    assert_eq!(record.layers[0].diff_id, record.layers[2].diff_id);

    let dest = work.path().join("rootfs");
    let report = store.unpack("aba", &dest, false).unwrap();
    assert_eq!(report.method, Method::CopyStack, "{report:?}");
    assert_eq!((report.layers, report.extracted), (3, 2));
    let tree = snapshot(&dest);
    assert_eq!(
        tree.keys().map(String::as_str).collect::<Vec<_>>(),
        ["keep", "only-b", "x"]
    );
    assert_eq!(std::fs::read_to_string(dest.join("x")).unwrap(), "from a\n");
    assert_eq!(
        std::fs::read_to_string(dest.join("keep")).unwrap(),
        "kept\n"
    );
    assert_eq!(
        oci_layers::LayerCache::open(&home)
            .unwrap()
            .list()
            .unwrap()
            .len(),
        2
    );
}
