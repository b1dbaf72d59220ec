use super::*;
use crate::error::ErrorKind;
use crate::testutil::{Fields, RawTar};
use crate::{HOST_MAX_BYTES, MAX_ENTRY_METADATA};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    (tmp, dest)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn plain_entries_land_under_the_destination() {
    let (_tmp, dest) = setup();
    let mut tar = RawTar::default();
    tar.entry(b"./", EntryType::Directory, b"", b"", 0o755)
        .entry(b"d/", EntryType::Directory, b"", b"", 0o500)
        .file("d/f", b"hello")
        .file("/abs/g", b"abs")
        .entry(b"d/link", EntryType::Symlink, b"/etc/passwd", b"", 0o777)
        .entry(b"d/hard", EntryType::Link, b"d/f", b"", 0o644)
        .entry(b"fifo", EntryType::Fifo, b"", b"", 0o640)
        .entry(b"x", EntryType::XGlobalHeader, b"", b"", 0o644);
    let done = unpack_into(&dest, tar.bytes().as_slice(), &Policy::guest()).unwrap();
    assert_eq!((done.entries, done.bytes, done.skipped), (6, 8, 1));
    assert_eq!(done.specials_skipped, 0);
    assert_eq!(std::fs::read(dest.join("d/f")).unwrap(), b"hello");
    assert_eq!(std::fs::read(dest.join("abs/g")).unwrap(), b"abs");
    let d = std::fs::metadata(dest.join("d")).unwrap();
    assert_eq!(d.permissions().mode() & 0o7777, 0o500);
    assert_eq!(d.mtime(), 1_000_000);
    assert_eq!(
        std::fs::read_link(dest.join("d/link")).unwrap(),
        Path::new("/etc/passwd")
    );
    let (f, h) = (
        std::fs::metadata(dest.join("d/f")).unwrap(),
        std::fs::metadata(dest.join("d/hard")).unwrap(),
    );
    assert_eq!(f.ino(), h.ino());
    assert_eq!(f.mode() & 0o7777, 0o644);
    let fifo = std::fs::symlink_metadata(dest.join("fifo")).unwrap();
    assert_eq!(fifo.mode() & 0o170000, 0o010000);
    assert_eq!(fifo.mode() & 0o7777, 0o640);
}

#[test]
fn entries_that_escape_are_refused() {
    for policy in [Policy::guest(), Policy::host()] {
        let (tmp, dest) = setup();
        std::os::unix::fs::symlink("/", dest.join("up")).unwrap();
        std::os::unix::fs::symlink("../..", dest.join("rel")).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (RawTar::default().file("../evil", b"x").bytes(), "`..`"),
            (RawTar::default().file("a/../../evil", b"x").bytes(), "`..`"),
            (RawTar::default().file("up/evil", b"x").bytes(), "outside"),
            (RawTar::default().file("rel/evil", b"x").bytes(), "outside"),
            (
                RawTar::default()
                    .entry(b"l", EntryType::Symlink, b"/", b"", 0o777)
                    .file("l/evil", b"x")
                    .bytes(),
                "outside",
            ),
            (
                RawTar::default()
                    .entry(b"l2", EntryType::Symlink, b"../", b"", 0o777)
                    .entry(b"l2/evil/", EntryType::Directory, b"", b"", 0o755)
                    .bytes(),
                "outside",
            ),
            (
                RawTar::default()
                    .entry(b"h", EntryType::Link, b"../../outside", b"", 0o644)
                    .bytes(),
                "`..`",
            ),
            (
                RawTar::default()
                    .entry(b"h", EntryType::Link, b"up/etc", b"", 0o644)
                    .bytes(),
                "outside",
            ),
        ];
        for (i, (bytes, needle)) in cases.into_iter().enumerate() {
            let err = unpack_into(&dest, bytes.as_slice(), &policy).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "case {i}: {err}");
            assert!(
                matches!(err, Error::Escape { .. }),
                "case {i}: not an escape: {err}"
            );
            assert!(err.to_string().contains(needle), "case {i}: {err}");
        }
        assert!(!tmp.path().join("evil").exists());
        assert!(!tmp.path().parent().unwrap().join("evil").exists());
        assert!(!dest.join("a").exists(), "nothing made for a refused name");
    }
}

#[test]
fn replacing_and_merging() {
    let (_tmp, dest) = setup();
    std::fs::create_dir_all(dest.join("dir/keep")).unwrap();
    std::fs::write(dest.join("file"), "old").unwrap();
    let mut tar = RawTar::default();
    tar.file("file", b"new").file("dir/added", b"a");
    unpack_into(&dest, tar.bytes().as_slice(), &Policy::guest()).unwrap();
    assert_eq!(std::fs::read(dest.join("file")).unwrap(), b"new");
    assert!(dest.join("dir/keep").is_dir());
    assert!(dest.join("dir/added").is_file());
    let err = unpack_into(
        &dest,
        RawTar::default().file("dir", b"x").bytes().as_slice(),
        &Policy::guest(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("directory"), "{err}");
    let err = unpack_into(
        &dest,
        RawTar::default().file("file/sub", b"x").bytes().as_slice(),
        &Policy::guest(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    let err = unpack_into(
        &dest.join("file"),
        RawTar::default().bytes().as_slice(),
        &Policy::guest(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Io { op: Op::OpenDir, path, .. } if path.ends_with("dest/file")),
        "{err}"
    );
}

#[test]
fn broken_and_oversized_streams_are_errors() {
    let (_tmp, dest) = setup();
    let policy = Policy::guest();
    let mut bytes = RawTar::default().file("f", &[7; 5000]).bytes();
    bytes.truncate(2000);
    let err = unpack_into(&dest, bytes.as_slice(), &policy).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    let garbage = vec![0x55u8; 4096];
    let err = unpack_into(&dest, garbage.as_slice(), &policy).unwrap_err();
    assert!(err.to_string().contains("not a valid tar"), "{err}");
    let long = vec![b'n'; MAX_ENTRY_METADATA + 10];
    let mut tar = RawTar::default();
    tar.entry(b"././@LongLink", EntryType::GNULongName, b"", &long, 0o644)
        .file("f", b"x");
    let err = unpack_into(&dest, tar.bytes().as_slice(), &policy).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Limit, "{err}");
    assert!(err.to_string().contains("tar headers"), "{err}");
    // A long name well within the cap is fine.
    let mut tar = RawTar::default();
    let name = format!("{}/f", "d".repeat(200));
    tar.entry(
        b"././@LongLink",
        EntryType::GNULongName,
        b"",
        name.as_bytes(),
        0o644,
    )
    .file("f", b"x");
    unpack_into(&dest, tar.bytes().as_slice(), &policy).unwrap();
    assert!(dest.join(&name).is_file());
}

#[test]
fn host_skips_and_lists_special_files() {
    let (_tmp, dest) = setup();
    let mut tar = RawTar::default();
    let dev = |device| Fields {
        device,
        mode: 0o666,
        ..Fields::default()
    };
    tar.with(b"dev/null", EntryType::Char, dev((1, 3)))
        .with(b"./dev/sda", EntryType::Block, dev((8, 0)))
        .entry(b"pipe", EntryType::Fifo, b"", b"", 0o644)
        .entry(b"dev/also-null", EntryType::Link, b"dev/null", b"", 0o644)
        .file("dev/ok", b"ok");
    let done = unpack_into(&dest, tar.bytes().as_slice(), &Policy::host()).unwrap();
    assert_eq!(
        (done.entries, done.skipped, done.specials_skipped),
        (1, 4, 4)
    );
    assert_eq!(
        done.special_names,
        ["dev/null", "dev/sda", "pipe", "dev/also-null"]
    );
    for name in ["dev/null", "dev/sda", "pipe", "dev/also-null"] {
        assert!(
            std::fs::symlink_metadata(dest.join(name)).is_err(),
            "{name} was created"
        );
    }
    assert_eq!(std::fs::read(dest.join("dev/ok")).unwrap(), b"ok");

    // An existing special file beneath is not linked to either.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dest.join("fifo"),
        FileType::Fifo,
        Mode::RUSR,
        0,
    )
    .unwrap();
    let mut tar = RawTar::default();
    tar.entry(b"link", EntryType::Link, b"fifo", b"", 0o644);
    let done = unpack_into(&dest, tar.bytes().as_slice(), &Policy::host()).unwrap();
    assert_eq!(done.special_names, ["link"]);
    assert!(!dest.join("link").exists());

    // The list is bounded, the count is not.
    let mut tar = RawTar::default();
    for i in 0..MAX_REPORTED_NAMES + 6 {
        tar.entry(format!("p{i}").as_bytes(), EntryType::Fifo, b"", b"", 0o644);
    }
    let done = unpack_into(&dest, tar.bytes().as_slice(), &Policy::host()).unwrap();
    assert_eq!(done.specials_skipped, MAX_REPORTED_NAMES as u64 + 6);
    assert_eq!(done.special_names.len(), MAX_REPORTED_NAMES);

    if is_root() {
        // The guest's policy creates device nodes (which needs CAP_MKNOD).
        let mut tar = RawTar::default();
        tar.with(b"null", EntryType::Char, dev((1, 3)));
        unpack_into(&dest, tar.bytes().as_slice(), &Policy::guest()).unwrap();
        let st = std::fs::symlink_metadata(dest.join("null")).unwrap();
        assert_eq!(st.mode() & 0o170000, 0o020000);
        assert_eq!(st.rdev(), rustix::fs::makedev(1, 3));
    }
}

#[test]
fn host_clears_setid_bits_and_guest_keeps_them() {
    let entries = |tar: &mut RawTar| {
        tar.entry(b"bin/", EntryType::Directory, b"", b"", 0o3775)
            .entry(b"bin/su", EntryType::Regular, b"", b"x", 0o4755)
            .entry(b"bin/wall", EntryType::Regular, b"", b"x", 0o2755)
            .entry(b"bin/pipe", EntryType::Fifo, b"", b"", 0o6644)
            .bytes()
    };
    let bytes = entries(&mut RawTar::default());
    let (_tmp, dest) = setup();
    unpack_into(&dest, bytes.as_slice(), &Policy::host()).unwrap();
    assert_eq!(
        mode_of(&dest.join("bin")),
        0o1775,
        "sticky kept, setgid gone"
    );
    assert_eq!(mode_of(&dest.join("bin/su")), 0o755);
    assert_eq!(mode_of(&dest.join("bin/wall")), 0o755);

    let (_tmp, dest) = setup();
    unpack_into(&dest, bytes.as_slice(), &Policy::guest()).unwrap();
    assert_eq!(mode_of(&dest.join("bin")), 0o3775);
    assert_eq!(mode_of(&dest.join("bin/su")), 0o4755);
    assert_eq!(mode_of(&dest.join("bin/wall")), 0o2755);
    assert_eq!(mode_of(&dest.join("bin/pipe")), 0o6644);
}

#[test]
fn host_does_not_take_owners_unless_asked() {
    let owned = |uid, gid| Fields {
        data: b"x",
        uid,
        gid,
        ..Fields::default()
    };
    let mut tar = RawTar::default();
    tar.with(b"d/", EntryType::Directory, owned(1234, 5678))
        .with(b"d/f", EntryType::Regular, owned(1234, 5678))
        .entry(b"d/l", EntryType::Symlink, b"f", b"", 0o777);
    let bytes = tar.bytes();
    let me = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let owner = |p: &Path| {
        let st = std::fs::symlink_metadata(p).unwrap();
        (st.uid(), st.gid())
    };

    let (_tmp, dest) = setup();
    unpack_into(&dest, bytes.as_slice(), &Policy::host()).unwrap();
    assert_eq!(owner(&dest.join("d")), me);
    assert_eq!(owner(&dest.join("d/f")), me);

    if is_root() {
        let mut policy = Policy::host();
        policy.owners = true;
        let (_tmp, dest) = setup();
        unpack_into(&dest, bytes.as_slice(), &policy).unwrap();
        assert_eq!(owner(&dest.join("d")), (1234, 5678));
        assert_eq!(owner(&dest.join("d/f")), (1234, 5678));
        // The guest's policy takes owners when it runs as root.
        let (_tmp, dest) = setup();
        unpack_into(&dest, bytes.as_slice(), &Policy::guest()).unwrap();
        assert_eq!(owner(&dest.join("d/f")), (1234, 5678));
    } else {
        assert!(!Policy::guest().owners);
    }
}

#[test]
fn caps_on_bytes_and_entries_are_refused_clearly() {
    assert_eq!(Policy::host().max_bytes, HOST_MAX_BYTES);
    let mut policy = Policy::host();
    policy.max_bytes = 10;

    let (_tmp, dest) = setup();
    let bytes = RawTar::default().file("big", &[1; 11]).bytes();
    let err = unpack_into(&dest, bytes.as_slice(), &policy).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Limit {
                limit: Limit::Bytes,
                max: 10
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Limit);
    assert!(err.to_string().contains("Policy::max_bytes"), "{err}");
    assert!(!dest.join("big").exists(), "refused before writing");

    let bytes = RawTar::default()
        .file("a", &[1; 6])
        .file("b", &[1; 6])
        .bytes();
    let err = unpack_into(&dest, bytes.as_slice(), &policy).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Limit {
                limit: Limit::Bytes,
                ..
            }
        ),
        "{err}"
    );
    let bytes = RawTar::default().file("a", &[1; 10]).bytes();
    assert_eq!(
        unpack_into(&dest, bytes.as_slice(), &policy).unwrap().bytes,
        10
    );

    let mut policy = Policy::host();
    policy.max_entries = 2;
    let two = RawTar::default().file("1", b"").file("2", b"").bytes();
    unpack_into(&dest, two.as_slice(), &policy).unwrap();
    // Skipped entries count: they cost the parser all the same.
    let three = RawTar::default()
        .file("1", b"")
        .entry(b"p", EntryType::Fifo, b"", b"", 0o644)
        .file("3", b"")
        .bytes();
    let err = unpack_into(&dest, three.as_slice(), &policy).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Limit {
                limit: Limit::Entries,
                max: 2
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("more than 2 entries"), "{err}");
    assert!(!dest.join("3").exists());
}
