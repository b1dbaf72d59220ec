//! Data strategies on real filesystems: XFS with reflink, ext4, tmpfs, and ramfs (no xattrs).
//! All need root for mounting.

use std::fs;
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::Strategy;
use crate::testutil::compare::{assert_same_tree, xattrs};
use crate::testutil::fixture;
use crate::testutil::mount::{Mounted, shares_extents};
use crate::testutil::root_or_skip;

/// Copies `src` to `dst` starting with `first`; checks that `expected` moved every file's data
/// and that the copy is exact.
fn check(
    src: &Path,
    dst: &Path,
    first: Option<Strategy>,
    expected: Strategy,
    with_data: u64,
) -> Report {
    let opts = Options {
        strategy: first,
        ..Options::default()
    };
    let report = copy_tree(src, dst, &opts, &|_| false).unwrap();
    assert_eq!(report.strategy(), Some(expected), "{report:?}");
    assert_eq!(report.files_by(expected), with_data, "{report:?}");
    assert_same_tree(src, dst);
    report
}

#[test]
fn xfs_reflinks_and_falls_back_when_told_or_across_filesystems() {
    if !root_or_skip("xfs_reflinks") {
        return;
    }
    let xfs = Mounted::xfs();
    let src = xfs.path().join("src");
    let n = fixture::build(&src);

    check(&src, &xfs.path().join("auto"), None, Strategy::Reflink, n);
    assert!(
        shares_extents(&xfs.path().join("auto/big")),
        "reflinked copy shares no extents"
    );

    check(
        &src,
        &xfs.path().join("rw"),
        Some(Strategy::ReadWrite),
        Strategy::ReadWrite,
        n,
    );
    assert!(
        !shares_extents(&xfs.path().join("rw/big")),
        "read/write copy shares extents"
    );

    check(
        &src,
        &xfs.path().join("cfr"),
        Some(Strategy::CopyFileRange),
        Strategy::CopyFileRange,
        n,
    );

    // From /tmp (ext4) into XFS: neither FICLONE nor copy_file_range crosses filesystems.
    let tmp = tempfile::tempdir().unwrap();
    let ext4_src = tmp.path().join("src");
    let n = fixture::build(&ext4_src);
    check(
        &ext4_src,
        &xfs.path().join("from_ext4"),
        None,
        Strategy::ReadWrite,
        n,
    );
}

#[test]
fn ext4_uses_copy_file_range_and_read_write_byte_identically() {
    if !root_or_skip("ext4") {
        return;
    }
    let ext4 = Mounted::ext4();
    let src = ext4.path().join("src");
    let n = fixture::build(&src);
    check(
        &src,
        &ext4.path().join("auto"),
        None,
        Strategy::CopyFileRange,
        n,
    );
    check(
        &src,
        &ext4.path().join("rw"),
        Some(Strategy::ReadWrite),
        Strategy::ReadWrite,
        n,
    );
    // Another ext4 (the root filesystem): a different superblock, so copy_file_range says EXDEV.
    let tmp = tempfile::tempdir().unwrap();
    check(
        &src,
        &tmp.path().join("other_fs"),
        None,
        Strategy::ReadWrite,
        n,
    );
}

#[test]
fn tmpfs_uses_copy_file_range_and_read_write_byte_identically() {
    if !root_or_skip("tmpfs") {
        return;
    }
    let tmpfs = Mounted::memory("tmpfs");
    let src = tmpfs.path().join("src");
    let n = fixture::build(&src);
    check(
        &src,
        &tmpfs.path().join("auto"),
        None,
        Strategy::CopyFileRange,
        n,
    );
    check(
        &src,
        &tmpfs.path().join("rw"),
        Some(Strategy::ReadWrite),
        Strategy::ReadWrite,
        n,
    );
}

#[test]
fn attributes_a_filesystem_does_not_support_are_counted_not_fatal() {
    if !root_or_skip("ramfs") {
        return;
    }
    let ramfs = Mounted::memory("ramfs");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    for (name, value) in [("user.a", &b"1"[..]), ("trusted.b", b"2")] {
        rustix::fs::lsetxattr(src.join("f"), name, value, rustix::fs::XattrFlags::empty()).unwrap();
    }
    rustix::fs::lsetxattr(&src, "user.dir", b"3", rustix::fs::XattrFlags::empty()).unwrap();
    let dst = ramfs.path().join("dst");
    let report = copy_tree(&src, &dst, &Options::default(), &|_| false).unwrap();
    assert_eq!(report.xattrs_skipped, 3, "{report:?}");
    assert_eq!(fs::read(dst.join("f")).unwrap(), b"data");
    assert!(xattrs(&dst.join("f")).is_empty());
    let (a, b) = (
        fs::metadata(src.join("f")).unwrap(),
        fs::metadata(dst.join("f")).unwrap(),
    );
    assert_eq!(
        (a.mode(), a.mtime(), a.mtime_nsec()),
        (b.mode(), b.mtime(), b.mtime_nsec())
    );
}
