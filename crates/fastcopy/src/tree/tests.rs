use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use super::*;
use crate::Strategy;
use crate::testutil::compare::{assert_same_tree, snapshot, xattrs};
use crate::testutil::fixture::{self, SYMLINK_ATIME};

fn nothing(_: &Path) -> bool {
    false
}

#[test]
fn rich_tree_is_copied_exactly_in_parallel_and_sequentially() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let with_data = fixture::build(&src);
    let root = rustix::process::geteuid().is_root();

    for parallel in [true, false] {
        // Taken anew each round: comparing reads files, which moves their atimes.
        // Symlink atimes are left out of snapshots: reading a link (copy or compare) moves it.
        let link_atime = |p: &Path| {
            let md = fs::symlink_metadata(p.join("links/thunar")).unwrap();
            (md.atime(), md.atime_nsec())
        };
        if parallel {
            let set = (SYMLINK_ATIME.tv_sec, SYMLINK_ATIME.tv_nsec);
            assert_eq!(link_atime(&src), set, "the fixture's symlink atime");
        }
        let before = snapshot(&src);
        let src_link_atime = link_atime(&src);
        let dst = tmp.path().join(format!("dst-{parallel}"));
        let report = copy_tree_with(&src, &dst, &Options::default(), &nothing, parallel).unwrap();
        assert_eq!(link_atime(&dst), src_link_atime, "symlink atime");
        assert_eq!(
            before,
            snapshot(&src),
            "copying changed the source (atimes included)"
        );
        assert_same_tree(&src, &dst);

        assert_eq!(
            report.files,
            with_data + 1,
            "data files and one empty: {report:?}"
        );
        let by_strategy: u64 = [
            Strategy::Reflink,
            Strategy::CopyFileRange,
            Strategy::ReadWrite,
        ]
        .iter()
        .map(|&s| report.files_by(s))
        .sum();
        assert_eq!(by_strategy, with_data, "{report:?}");
        assert_eq!(report.dirs, 11, "{report:?}");
        assert_eq!(report.symlinks, 7, "{report:?}");
        assert_eq!(report.hardlinks, 4, "{report:?}");
        assert_eq!(report.specials, if root { 4 } else { 2 }, "{report:?}");
        assert_eq!(report.xattrs_skipped, 0, "{report:?}");
        let sizes =
            1 + 4096 + 65_537 + (3 << 20) + 123 + (12 << 20) + 5 + 2 * 10 + 4 + 2 + 5000 + 4 + 1;
        assert_eq!(
            report.bytes,
            sizes + if root { 6 + 4 } else { 0 },
            "{report:?}"
        );

        // Spot checks independent of the comparison helper.
        assert_eq!(
            fs::read_link(dst.join("links/thunar")).unwrap(),
            Path::new("thunar")
        );
        assert!(
            fs::symlink_metadata(dst.join("links/dir_link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(xattrs(&dst.join("user_xattrs"))["user.bin"], b"\0\x01\xff");
        assert_eq!(xattrs(&dst.join("dir_b"))["user.dir"], b"d");
        let sparse = fs::metadata(dst.join("sparse")).unwrap();
        assert!(
            sparse.blocks() * 512 < 1 << 20,
            "holes were filled: {} blocks",
            sparse.blocks()
        );
        if root {
            let setuid = fs::metadata(dst.join("setuid")).unwrap();
            assert_eq!((setuid.mode() & 0o7777, setuid.uid()), (0o4755, 1000));
            assert_eq!(
                xattrs(&dst.join("caps"))["security.capability"],
                fixture::CAPABILITY
            );
            assert_eq!(
                xattrs(&dst.join("user_xattrs"))["trusted.overlay.opaque"],
                b"y"
            );
            assert_eq!(
                fs::metadata(dst.join("specials/null")).unwrap().rdev(),
                rustix::fs::makedev(1, 3)
            );
        }
    }
}

#[test]
fn merges_into_existing_tree_and_replaces_conflicts_without_following_links() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    let outside = tmp.path().join("outside");
    fs::create_dir_all(outside.join("victim_dir")).unwrap();
    fs::write(outside.join("victim"), b"victim").unwrap();

    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/new"), b"new").unwrap();
    fs::write(src.join("file_over_dir"), b"file").unwrap();
    fs::create_dir(src.join("dir_over_file")).unwrap();
    fs::write(src.join("dir_over_file/child"), b"child").unwrap();
    fs::write(src.join("file_over_link"), b"not through").unwrap();
    fs::create_dir(src.join("dir_over_link")).unwrap();
    fs::write(src.join("dir_over_link/x"), b"x").unwrap();
    symlink("elsewhere", src.join("link_over_dir")).unwrap();
    fs::write(src.join("short_over_long"), b"short").unwrap();

    fs::create_dir_all(dst.join("d")).unwrap();
    fs::write(dst.join("d/old"), b"old").unwrap();
    fs::create_dir_all(dst.join("file_over_dir/sub/deeper")).unwrap();
    fs::write(dst.join("file_over_dir/sub/deeper/f"), b"f").unwrap();
    fs::set_permissions(
        dst.join("file_over_dir/sub"),
        fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    fs::write(dst.join("dir_over_file"), b"was a file").unwrap();
    symlink(outside.join("victim"), dst.join("file_over_link")).unwrap();
    symlink(outside.join("victim_dir"), dst.join("dir_over_link")).unwrap();
    fs::create_dir_all(dst.join("link_over_dir/stuff")).unwrap();
    fs::write(dst.join("short_over_long"), b"a much longer old content").unwrap();

    copy_tree(&src, &dst, &Options::default(), &nothing).unwrap();

    // Everything the source has is now in the destination, exactly (before reading moves atimes).
    let (a, b) = (snapshot(&src), snapshot(&dst));
    for (path, entry) in &a {
        let copy = b.get(path).map(|e| e.without_ino());
        assert_eq!(Some(entry.without_ino()), copy, "{}", path.display());
    }
    assert_eq!(
        fs::read(dst.join("d/old")).unwrap(),
        b"old",
        "merged dir keeps its entries"
    );
    assert_eq!(fs::read(dst.join("d/new")).unwrap(), b"new");
    assert_eq!(fs::read(dst.join("file_over_dir")).unwrap(), b"file");
    assert_eq!(fs::read(dst.join("dir_over_file/child")).unwrap(), b"child");
    assert!(
        fs::symlink_metadata(dst.join("file_over_link"))
            .unwrap()
            .is_file()
    );
    assert_eq!(
        fs::read(dst.join("file_over_link")).unwrap(),
        b"not through"
    );
    assert_eq!(
        fs::read(outside.join("victim")).unwrap(),
        b"victim",
        "wrote through a symlink"
    );
    assert!(
        fs::symlink_metadata(dst.join("dir_over_link"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(fs::read(dst.join("dir_over_link/x")).unwrap(), b"x");
    assert_eq!(
        fs::read_dir(outside.join("victim_dir")).unwrap().count(),
        0,
        "followed a dir symlink"
    );
    assert_eq!(
        fs::read_link(dst.join("link_over_dir")).unwrap(),
        Path::new("elsewhere")
    );
    assert_eq!(fs::read(dst.join("short_over_long")).unwrap(), b"short");
}

#[test]
fn excluded_entries_and_their_subtrees_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fixture::build(&src);
    let dst = tmp.path().join("dst");
    let exclude = |rel: &Path| rel == Path::new("dir_a") || rel == Path::new("links/thunar");
    copy_tree(&src, &dst, &Options::default(), &exclude).unwrap();
    assert!(!dst.join("dir_a").exists());
    assert!(fs::symlink_metadata(dst.join("links/thunar")).is_err());
    assert!(fs::symlink_metadata(dst.join("links/dangling")).is_ok());
    // hl_a's group lost its dir_a member only.
    assert_eq!(
        fs::metadata(dst.join("hl_a")).unwrap().ino(),
        fs::metadata(dst.join("dir_b/hl_b")).unwrap().ino()
    );
}

#[test]
fn destination_inside_source_is_not_copied_into_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("a/b/f"), b"f").unwrap();
    let dst = src.join("a/copy");
    copy_tree(&src, &dst, &Options::default(), &nothing).unwrap();
    assert_eq!(fs::read(dst.join("a/b/f")).unwrap(), b"f");
    assert!(!dst.join("a/copy").exists());
}

#[test]
fn source_must_be_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    fs::write(&file, b"").unwrap();
    let err = copy_tree(&file, &tmp.path().join("d"), &Options::default(), &nothing).unwrap_err();
    assert!(matches!(err, Error::NotADirectory { .. }), "{err}");
    let err = copy_tree(
        &tmp.path().join("missing"),
        &tmp.path().join("d"),
        &Options::default(),
        &nothing,
    )
    .unwrap_err();
    assert!(err.to_string().contains("cannot stat"), "{err}");
}

#[test]
fn options_turn_off_owner_and_xattrs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fixture::build(&src);
    let dst = tmp.path().join("dst");
    let opts = Options {
        preserve_owner: false,
        preserve_xattrs: false,
        ..Options::default()
    };
    copy_tree(&src, &dst, &opts, &nothing).unwrap();
    assert!(xattrs(&dst.join("user_xattrs")).is_empty());
    let me = rustix::process::geteuid().as_raw();
    assert_eq!(fs::metadata(dst.join("odd")).unwrap().uid(), me);
    assert_eq!(fs::metadata(dst.join("dir_a")).unwrap().uid(), me);
    assert_eq!(
        fs::metadata(dst.join("setgid")).unwrap().mode() & 0o7777,
        0o2711
    );
}

#[test]
fn remove_tree_removes_without_following_and_tolerates_missing() {
    let tmp = tempfile::tempdir().unwrap();
    remove_tree(&tmp.path().join("missing")).unwrap();

    let keep = tmp.path().join("keep");
    fs::create_dir(&keep).unwrap();
    fs::write(keep.join("precious"), b"p").unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir_all(tree.join("a/b/c")).unwrap();
    fs::write(tree.join("a/b/c/f"), b"f").unwrap();
    symlink(&keep, tree.join("a/link_to_keep")).unwrap();
    symlink("self", tree.join("a/self")).unwrap();
    rustix::fs::mknodat(CWD, tree.join("fifo"), FileType::Fifo, Mode::RUSR, 0).unwrap();
    fs::set_permissions(tree.join("a/b"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(tree.join("a/b/c"), fs::Permissions::from_mode(0o000)).unwrap();

    remove_tree(&tree).unwrap();
    assert!(fs::symlink_metadata(&tree).is_err());
    assert_eq!(fs::read(keep.join("precious")).unwrap(), b"p");

    // A symlink to a directory is removed as a link.
    let link = tmp.path().join("link");
    symlink(&keep, &link).unwrap();
    remove_tree(&link).unwrap();
    assert!(fs::symlink_metadata(&link).is_err());
    assert!(keep.join("precious").exists());

    let file = tmp.path().join("file");
    fs::write(&file, b"").unwrap();
    remove_tree(&file).unwrap();
    assert!(!file.exists());
}
