//! The extraction-based fallback: when the copy-based path fails for real (an unusable or
//! damaged layer cache), assembly still produces exactly the rootfs the normal path does, and
//! says why it fell back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rootfs_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use oci_layers::rootfs::{AssembleReport, Method};
use oci_layers::{Digest, LayerCache};
use rootfs_support::{
    COMPLETE_XATTR, Node, PARTIAL_XATTR, fallback_staging, import, rich_layout, snapshot, xattr,
};

/// A layout of the rich image and the tree the normal (copy-based) path makes of it.
struct Fixture {
    work: tempfile::TempDir,
    layout: PathBuf,
    diff_ids: Vec<Digest>,
    reference: BTreeMap<String, Node>,
}

fn fixture() -> Fixture {
    let work = tempfile::tempdir().unwrap();
    let (layout, built) = rich_layout(work.path());
    let (store, _) = import(&work.path().join("reference-home"), &layout, "rich");
    let dest = work.path().join("reference");
    let report = store.unpack("rich", &dest, false).unwrap();
    assert_eq!(report.method, Method::CopyStack);
    Fixture {
        reference: snapshot(&dest),
        diff_ids: built.layers.iter().map(|l| l.diff_id.clone()).collect(),
        work,
        layout,
    }
}

impl Fixture {
    fn home(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Unpacks into a fresh destination of home `name`; checks the fallback ran and gave the
    /// reference tree, completely recorded, with no staging left behind.
    fn unpack_falls_back(&self, name: &str) -> AssembleReport {
        let store = oci_layers::Store::open(&self.home(name)).unwrap();
        store.import(&self.layout, Some("rich"), false).unwrap();
        let dest = self.work.path().join(format!("{name}-rootfs"));
        let report = store.unpack("rich", &dest, false).unwrap();
        assert_eq!(report.method, Method::ExtractStack, "{report:?}");
        assert!(report.fallback_reason.is_some(), "{report:?}");
        assert!(report.copy.files > 0, "{report:?}");
        assert_eq!(snapshot(&dest), self.reference);
        assert!(xattr(&dest, COMPLETE_XATTR).is_some());
        assert_eq!(xattr(&dest, PARTIAL_XATTR), None);
        assert_eq!(fallback_staging(self.work.path()), Vec::<String>::new());
        report
    }

    /// Fills the layer cache of home `name` by one normal unpack.
    fn warm(&self, name: &str) -> LayerCache {
        let home = self.home(name);
        let (store, _) = import(&home, &self.layout, "rich");
        let dest = self.work.path().join(format!("{name}-warmup"));
        assert_eq!(
            store.unpack("rich", &dest, false).unwrap().method,
            Method::CopyStack
        );
        LayerCache::open(&home).unwrap()
    }
}

fn reason(report: &AssembleReport) -> &str {
    report.fallback_reason.as_deref().unwrap()
}

#[test]
fn a_file_where_the_cache_directory_should_be() {
    let f = fixture();
    let home = f.home("no-cache-dir");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join("layers"), b"not a directory").unwrap();
    let report = f.unpack_falls_back("no-cache-dir");
    assert!(reason(&report).contains("layers"), "{}", reason(&report));
    assert_eq!(
        fs::read(home.join("layers")).unwrap(),
        b"not a directory",
        "what is in the cache's way is not ours to remove"
    );
}

#[test]
fn a_file_where_the_cache_keeps_sha256_layers() {
    let f = fixture();
    let home = f.home("no-alg-dir");
    fs::create_dir_all(home.join("layers")).unwrap();
    fs::write(home.join("layers/sha256"), b"in the way").unwrap();
    let report = f.unpack_falls_back("no-alg-dir");
    assert!(reason(&report).contains("sha256"), "{}", reason(&report));
}

#[test]
fn a_cached_layer_with_a_corrupt_index() {
    let f = fixture();
    let cache = f.warm("corrupt-index");
    let index = cache.layer_dir(&f.diff_ids[1]).join("entries");
    fs::write(&index, b"garbage").unwrap();
    let report = f.unpack_falls_back("corrupt-index");
    assert!(reason(&report).contains("corrupt"), "{}", reason(&report));
}

#[test]
fn a_cached_layer_missing_files_fails_mid_copy() {
    let f = fixture();
    let cache = f.warm("missing-files");
    // Layer 1 provides most of the tree: directories and some files get copied before the
    // copy of the missing one fails, so the fallback starts from a half-written destination.
    let root = cache.layer_dir(&f.diff_ids[0]).join("rootfs");
    fs::remove_file(root.join("usr/bin/tool")).unwrap();
    fs::remove_file(root.join("big/blob")).unwrap();
    let report = f.unpack_falls_back("missing-files");
    assert!(
        reason(&report).contains("usr/bin/tool") || reason(&report).contains("big/blob"),
        "{}",
        reason(&report)
    );
}

#[test]
fn a_cached_layer_without_its_tree() {
    let f = fixture();
    let cache = f.warm("no-tree");
    let root: &Path = &cache.layer_dir(&f.diff_ids[2]).join("rootfs");
    fs::remove_dir_all(root).unwrap();
    f.unpack_falls_back("no-tree");
}
