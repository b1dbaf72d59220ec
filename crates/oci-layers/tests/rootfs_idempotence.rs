//! What assembly does with a destination that is not empty: a complete rootfs of the same image
//! is left untouched, another image's or a foreign directory is refused, a half-written one is
//! cleared and redone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rootfs_support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use oci_layers::rootfs::{Method, Record};
use rootfs_support::{
    COMPLETE_XATTR, PARTIAL_XATTR, import, rich_layout, small_layout, snapshot, whiteout_names,
    xattr,
};

/// Inode and ctime of every path, the destination itself included: what "untouched" means.
fn stamps(root: &Path) -> BTreeMap<String, (u64, i64, i64)> {
    let mut out = BTreeMap::new();
    let meta = fs::symlink_metadata(root).unwrap();
    out.insert(String::new(), (meta.ino(), meta.ctime(), meta.ctime_nsec()));
    for rel in snapshot(root).into_keys() {
        let meta = fs::symlink_metadata(root.join(&rel)).unwrap();
        out.insert(rel, (meta.ino(), meta.ctime(), meta.ctime_nsec()));
    }
    out
}

fn record(dest: &Path) -> Record {
    serde_json::from_slice(&xattr(dest, COMPLETE_XATTR).expect("a completion record")).unwrap()
}

#[test]
fn a_second_unpack_of_the_same_image_touches_nothing() {
    let work = tempfile::tempdir().unwrap();
    let layout = small_layout(work.path(), "alpha");
    let (store, image) = import(&work.path().join("home"), &layout, "alpha");
    let dest = work.path().join("rootfs");
    // An existing empty directory is as good as none.
    fs::create_dir(&dest).unwrap();

    let first = store.unpack("alpha", &dest, false).unwrap();
    assert_eq!(first.method, Method::CopyStack);
    let rec = record(&dest);
    assert_eq!(rec.manifest, image.manifest_digest);
    let diff_ids: Vec<_> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(rec.diff_ids, diff_ids);
    assert_eq!(xattr(&dest, PARTIAL_XATTR), None);
    let tree = snapshot(&dest);
    let before = stamps(&dest);
    assert!(before.contains_key("etc/os-release"));

    // ctime has nanosecond resolution, but make a rewrite visible even on a coarse clock.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = store.unpack("alpha", &dest, false).unwrap();
    assert_eq!(second.method, Method::AlreadyComplete);
    assert_eq!((second.layers, second.extracted), (2, 0));
    assert_eq!(second.copy, fastcopy::Report::default());
    assert_eq!(
        stamps(&dest),
        before,
        "no inode replaced, no metadata changed"
    );
    assert_eq!(snapshot(&dest), tree);
}

#[test]
fn another_images_rootfs_is_refused_and_kept() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let (store, _) = import(&home, &small_layout(work.path(), "alpha"), "alpha");
    store
        .import(&small_layout(work.path(), "beta"), Some("beta"), false)
        .unwrap();
    let dest = work.path().join("rootfs");
    store.unpack("alpha", &dest, false).unwrap();
    let before = stamps(&dest);

    let err = store.unpack("beta", &dest, false).unwrap_err().to_string();
    assert!(err.contains(&dest.display().to_string()), "{err}");
    assert!(err.contains("another image"), "{err}");
    assert_eq!(stamps(&dest), before);
    assert_eq!(
        fs::read_to_string(dest.join("etc/os-release")).unwrap(),
        "ID=alpha\n"
    );
}

#[test]
fn a_foreign_directory_is_refused_and_kept() {
    let work = tempfile::tempdir().unwrap();
    let (store, _) = import(
        &work.path().join("home"),
        &small_layout(work.path(), "alpha"),
        "alpha",
    );
    let dest = work.path().join("precious");
    fs::create_dir_all(dest.join("docs")).unwrap();
    fs::write(dest.join("docs/thesis.txt"), b"years of work").unwrap();
    fs::write(dest.join("etc-os-release"), b"mine").unwrap();
    let before = stamps(&dest);
    let tree = snapshot(&dest);

    let err = store.unpack("alpha", &dest, false).unwrap_err().to_string();
    assert!(err.contains(&dest.display().to_string()), "{err}");
    assert!(err.contains("not assembled by boxlite"), "{err}");
    assert_eq!(stamps(&dest), before);
    assert_eq!(snapshot(&dest), tree);
    assert_eq!(xattr(&dest, PARTIAL_XATTR), None);
    assert_eq!(xattr(&dest, COMPLETE_XATTR), None);
}

#[test]
fn a_partial_destination_is_cleared_and_redone() {
    let work = tempfile::tempdir().unwrap();
    // The rich image has read-only directories with content, which clearing must get through
    // (without root too).
    let (layout, _) = rich_layout(work.path());
    let (store, _) = import(&work.path().join("home"), &layout, "alpha");
    let dest = work.path().join("rootfs");
    store.unpack("alpha", &dest, false).unwrap();
    let good = snapshot(&dest);

    // What a process killed mid-assembly leaves: the partial mark, no completion record, a
    // tree that is not the image's.
    rustix::fs::setxattr(&dest, PARTIAL_XATTR, b"1", rustix::fs::XattrFlags::empty()).unwrap();
    rustix::fs::removexattr(&dest, COMPLETE_XATTR).unwrap();
    fs::write(dest.join("junk"), b"half-written").unwrap();
    fs::create_dir(dest.join("junkdir")).unwrap();
    fs::write(dest.join("junkdir/more"), b"x").unwrap();
    fs::write(dest.join("etc/passwd"), b"truncat").unwrap();
    fs::remove_file(dest.join("etc/hosts")).unwrap();

    let report = store.unpack("alpha", &dest, false).unwrap();
    assert_eq!(report.method, Method::CopyStack, "{report:?}");
    assert_eq!(report.extracted, 0, "the layers are cached already");
    assert!(!dest.join("junk").exists());
    assert!(!dest.join("junkdir").exists());
    assert_eq!(snapshot(&dest), good);
    assert_eq!(whiteout_names(&good), Vec::<&String>::new());
    assert_eq!(xattr(&dest, PARTIAL_XATTR), None);
    assert!(xattr(&dest, COMPLETE_XATTR).is_some());

    // And now it is complete: the next unpack does nothing.
    let again = store.unpack("alpha", &dest, false).unwrap();
    assert_eq!(again.method, Method::AlreadyComplete);
}

#[test]
fn a_file_as_destination_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let (store, _) = import(
        &work.path().join("home"),
        &small_layout(work.path(), "alpha"),
        "alpha",
    );
    let dest = work.path().join("file");
    fs::write(&dest, b"keep me").unwrap();
    let err = store.unpack("alpha", &dest, false).unwrap_err().to_string();
    assert!(err.contains(&dest.display().to_string()), "{err}");
    assert_eq!(fs::read(&dest).unwrap(), b"keep me");
}
