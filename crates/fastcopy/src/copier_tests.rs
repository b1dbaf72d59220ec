use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use rustix::fs::{Timespec, Timestamps};

use super::*;
use crate::testutil::compare::xattrs;

fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn mtime(path: &Path) -> (i64, i64) {
    let md = fs::symlink_metadata(path).unwrap();
    (md.mtime(), md.mtime_nsec())
}

#[test]
fn copier_is_sync() {
    fn sync<T: Sync + Send>() {}
    sync::<Copier>();
}

#[test]
fn threads_share_one_copier_and_hard_links_survive_races() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    let mut files = Vec::new();
    for i in 0..40 {
        let rel = format!("{}f{i}", ["", "a/", "a/b/"][i % 3]);
        fs::write(src.join(&rel), vec![i as u8; i * 1000]).unwrap();
        files.push(rel);
    }
    fs::write(src.join("linked"), b"shared inode").unwrap();
    for name in ["a/l1", "a/b/l2", "l3"] {
        fs::hard_link(src.join("linked"), src.join(name)).unwrap();
    }
    // Spread the names of one inode over all threads so they race for the first copy.
    let mut entries = vec![
        "linked".to_string(),
        "a/l1".into(),
        "a/b/l2".into(),
        "l3".into(),
    ];
    entries.extend(files);

    for round in 0..10 {
        let dst = tmp.path().join(format!("dst{round}"));
        let copier = Copier::new(Options::default());
        for dir in ["", "a", "a/b"] {
            copier.copy_entry(&src.join(dir), &dst.join(dir)).unwrap();
        }
        std::thread::scope(|s| {
            for t in 0..4 {
                let (copier, entries, src, dst) = (&copier, &entries, &src, &dst);
                s.spawn(move || {
                    for rel in entries.iter().skip(t).step_by(4) {
                        copier.copy_entry(&src.join(rel), &dst.join(rel)).unwrap();
                    }
                });
            }
        });
        let report = copier.finish().unwrap();
        assert_eq!(
            (report.files, report.hardlinks, report.dirs),
            (41, 3, 3),
            "{report:?}"
        );
        let ino = fs::metadata(dst.join("linked")).unwrap().ino();
        for name in ["a/l1", "a/b/l2", "l3"] {
            let md = fs::metadata(dst.join(name)).unwrap();
            assert_eq!((md.ino(), md.nlink()), (ino, 4), "{name} in round {round}");
        }
        assert_eq!(fs::read(dst.join("a/b/l2")).unwrap(), b"shared inode");
        assert_eq!(fs::read(dst.join("a/b/f5")).unwrap(), vec![5u8; 5000]);
    }
}

#[test]
fn directory_metadata_is_applied_last_deepest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("ro/inner")).unwrap();
    fs::write(src.join("ro/inner/f"), b"f").unwrap();
    rustix::fs::lsetxattr(
        src.join("ro"),
        "user.d",
        b"1",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::set_permissions(src.join("ro/inner"), fs::Permissions::from_mode(0o500)).unwrap();
    fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    set_mtime(&src.join("ro/inner"), 1_000_000_000, 1);
    set_mtime(&src.join("ro"), 1_100_000_000, 2);

    let dst = tmp.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let copier = Copier::new(Options::default());
    copier.copy_entry(&src.join("ro"), &dst.join("ro")).unwrap();
    copier
        .copy_entry(&src.join("ro/inner"), &dst.join("ro/inner"))
        .unwrap();
    // Until finish, directories stay writable so that children can be created.
    assert_eq!(
        fs::metadata(dst.join("ro/inner")).unwrap().mode() & 0o777,
        0o700
    );
    copier
        .copy_entry(&src.join("ro/inner/f"), &dst.join("ro/inner/f"))
        .unwrap();
    let report = copier.finish().unwrap();
    assert_eq!((report.dirs, report.files), (2, 1));

    assert_eq!(fs::metadata(dst.join("ro")).unwrap().mode() & 0o7777, 0o555);
    assert_eq!(
        fs::metadata(dst.join("ro/inner")).unwrap().mode() & 0o7777,
        0o500
    );
    assert_eq!(mtime(&dst.join("ro/inner")), (1_000_000_000, 1));
    assert_eq!(mtime(&dst.join("ro")), (1_100_000_000, 2));
    assert_eq!(xattrs(&dst.join("ro"))["user.d"], b"1");
    fs::set_permissions(dst.join("ro/inner"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(dst.join("ro"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(src.join("ro/inner"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn last_copy_of_a_directory_decides_its_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower/d"), tmp.path().join("upper/d"));
    fs::create_dir_all(&lower).unwrap();
    fs::create_dir_all(&upper).unwrap();
    fs::set_permissions(&lower, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&upper, fs::Permissions::from_mode(0o751)).unwrap();
    set_mtime(&lower, 1_000_000_000, 0);
    set_mtime(&upper, 1_200_000_000, 5);

    let dst = tmp.path().join("d");
    let copier = Copier::new(Options::default());
    copier.copy_entry(&lower, &dst).unwrap();
    copier.copy_entry(&upper, &dst).unwrap();
    copier.finish().unwrap();
    assert_eq!(fs::metadata(&dst).unwrap().mode() & 0o7777, 0o751);
    assert_eq!(mtime(&dst), (1_200_000_000, 5));
}

#[test]
fn a_directory_replaced_later_is_not_followed_by_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
    let src_dir = tmp.path().join("src_dir");
    fs::create_dir(&src_dir).unwrap();
    fs::set_permissions(&src_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let src_link = tmp.path().join("src_link");
    symlink(&outside, &src_link).unwrap();

    let dst = tmp.path().join("x");
    let copier = Copier::new(Options::default());
    copier.copy_entry(&src_dir, &dst).unwrap();
    copier.copy_entry(&src_link, &dst).unwrap();
    copier.finish().unwrap();
    assert!(fs::symlink_metadata(&dst).unwrap().file_type().is_symlink());
    assert_eq!(fs::metadata(&outside).unwrap().mode() & 0o7777, 0o700);
}

#[test]
fn copy_entry_replaces_conflicts_and_never_writes_through_links() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, b"victim").unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, b"content").unwrap();
    let fifo = tmp.path().join("fifo");
    rustix::fs::mknodat(CWD, &fifo, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();
    let dir = tmp.path().join("dir");
    fs::create_dir(&dir).unwrap();

    let dst = tmp.path().join("dst");
    fs::create_dir(&dst).unwrap();
    symlink(&victim, dst.join("over_link")).unwrap();
    fs::create_dir_all(dst.join("over_dir/sub")).unwrap();
    fs::write(dst.join("over_dir/sub/f"), b"").unwrap();
    fs::write(dst.join("fifo_over_file"), b"old").unwrap();
    fs::write(dst.join("dir_over_file"), b"old").unwrap();

    let copier = Copier::new(Options::default());
    copier.copy_entry(&file, &dst.join("over_link")).unwrap();
    copier.copy_entry(&file, &dst.join("over_dir")).unwrap();
    copier
        .copy_entry(&fifo, &dst.join("fifo_over_file"))
        .unwrap();
    copier.copy_entry(&dir, &dst.join("dir_over_file")).unwrap();
    copier.finish().unwrap();

    assert_eq!(fs::read(&victim).unwrap(), b"victim");
    assert!(
        fs::symlink_metadata(dst.join("over_link"))
            .unwrap()
            .is_file()
    );
    assert_eq!(fs::read(dst.join("over_link")).unwrap(), b"content");
    assert_eq!(fs::read(dst.join("over_dir")).unwrap(), b"content");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(dst.join("fifo_over_file"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(
        fs::symlink_metadata(dst.join("dir_over_file"))
            .unwrap()
            .is_dir()
    );
}

#[test]
fn missing_parent_is_an_error_naming_path_and_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    let dst = tmp.path().join("missing/file");
    let err = Copier::new(Options::default())
        .copy_entry(&file, &dst)
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&dst.display().to_string()), "{msg}");
    assert!(msg.contains("create the parent directory first"), "{msg}");
}

#[test]
fn copying_a_linked_inode_twice_to_one_path_is_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    fs::write(&a, b"x").unwrap();
    fs::hard_link(&a, tmp.path().join("b")).unwrap();
    let dst = tmp.path().join("dst");
    let copier = Copier::new(Options::default());
    copier.copy_entry(&a, &dst).unwrap();
    copier.copy_entry(&a, &dst).unwrap();
    let report = copier.finish().unwrap();
    assert_eq!((report.files, report.hardlinks), (1, 0));
    assert_eq!(fs::read(&dst).unwrap(), b"x");
}
