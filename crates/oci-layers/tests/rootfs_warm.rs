//! Warm and cold assembly: a second rootfs of an image comes from the layer cache alone, is the
//! same tree, and on a filesystem with reflink shares the cache's extents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rootfs_support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fastcopy::Strategy;
use oci_layers::LayerCache;
use oci_layers::rootfs::Method;
use rootfs_support::{Xfs, cache_staging, import, rich_layout, skip_unless_root, snapshot};

/// Cold then warm unpack of the rich image under `base`; returns both reports.
fn cold_then_warm(
    base: &Path,
) -> (
    oci_layers::rootfs::AssembleReport,
    oci_layers::rootfs::AssembleReport,
) {
    let (layout, built) = rich_layout(&base.join("work"));
    let home = base.join("home");
    let (store, _) = import(&home, &layout, "rich");

    let cold_dest = base.join("cold");
    let cold = store.unpack("rich", &cold_dest, false).unwrap();
    assert_eq!(cold.method, Method::CopyStack, "{cold:?}");
    assert_eq!(cold.extracted, 3);
    let cache = LayerCache::open(&home).unwrap();
    let mut diff_ids: Vec<_> = built.layers.iter().map(|l| l.diff_id.clone()).collect();
    diff_ids.sort();
    assert_eq!(cache.list().unwrap(), diff_ids);

    // A rootfs is the guest's to change: nothing written to it may reach the cache.
    let cold_tree = snapshot(&cold_dest);
    let mut blob = fs::OpenOptions::new()
        .write(true)
        .open(cold_dest.join("big/blob"))
        .unwrap();
    blob.write_all(b"guest was here").unwrap();
    drop(blob);
    fs::write(cold_dest.join("hard/b"), b"rewritten through one link\n").unwrap();
    fs::set_permissions(
        cold_dest.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    fs::remove_file(cold_dest.join("etc/passwd")).unwrap();

    let warm_dest = base.join("warm");
    let warm = store.unpack("rich", &warm_dest, false).unwrap();
    assert_eq!(warm.method, Method::CopyStack, "{warm:?}");
    assert_eq!(warm.extracted, 0, "every layer came from the cache");
    assert_eq!(warm.copy.files, cold.copy.files);
    assert_eq!(warm.copy.bytes, cold.copy.bytes);
    assert_eq!(snapshot(&warm_dest), cold_tree);
    assert_eq!(cache_staging(&home), Vec::<String>::new());
    (cold, warm)
}

#[test]
fn a_warm_unpack_extracts_nothing_and_gives_the_same_tree() {
    let base = tempfile::tempdir().unwrap();
    let (_, warm) = cold_then_warm(base.path());
    assert!(warm.copy.strategy().is_some());
}

#[test]
fn on_xfs_with_reflink_a_warm_unpack_shares_extents() {
    if skip_unless_root("on_xfs_with_reflink_a_warm_unpack_shares_extents") {
        return;
    }
    let xfs = Xfs::mount();
    let (cold, warm) = cold_then_warm(xfs.path());
    for report in [&cold, &warm] {
        assert_eq!(
            report.copy.strategy(),
            Some(Strategy::Reflink),
            "{report:?}"
        );
        assert_eq!(report.copy.copy_file_range + report.copy.read_write, 0);
    }
    // The kernel agrees: the rootfs's big file shares its extents with the cached layer's.
    let out = std::process::Command::new("filefrag")
        .arg("-v")
        .arg(xfs.path().join("warm/big/blob"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("shared"), "{text}");
}
