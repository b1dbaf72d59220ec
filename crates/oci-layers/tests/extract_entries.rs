//! Extraction of every entry type, with owners, modes, xattrs and times checked.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod extract_support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use extract_support::{Sandbox, Spec, dir, file, hardlink, symlink, tar};
use oci_layers::extract::{ExtractOptions, Extracted, extract_layer};
use oci_layers::{Algorithm, Compression, Digest};
use tar::EntryType;
use whiteout::{EntryKind, LayerEntry};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn extract(sandbox: &Sandbox, bytes: &[u8]) -> oci_layers::Result<Extracted> {
    extract_layer(
        bytes,
        Compression::None,
        &sandbox.dest,
        &ExtractOptions::default(),
    )
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn every_entry_type_with_metadata() {
    let sb = Sandbox::new();
    let long_dir = "d".repeat(120);
    let long_gnu = format!("{long_dir}/{}", "g".repeat(150));
    let long_pax = format!("{long_dir}/{}", "p".repeat(150));
    let caps = b"\x01\x00\x00\x02\x00\x04\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    let specs = vec![
        Spec {
            mode: 0o750,
            uid: 1000,
            gid: 1001,
            mtime: 1_500_000_000,
            ..dir("./usr")
        },
        Spec {
            mode: 0o755,
            mtime: 1_500_000_001,
            ..dir("usr/bin")
        },
        Spec {
            mode: 0o4755,
            uid: 1000,
            gid: 1001,
            pax: vec![
                ("mtime".into(), b"1700000000.123456789".to_vec()),
                ("SCHILY.xattr.user.comment".into(), b"hi\nthere".to_vec()),
                ("SCHILY.xattr.trusted.secret".into(), b"t".to_vec()),
                ("SCHILY.xattr.security.capability".into(), caps.to_vec()),
            ],
            ..file("usr/bin/tool", b"#!/bin/sh\necho tool\n")
        },
        Spec {
            pax: vec![("LIBARCHIVE.xattr.user.la%3Dx".into(), b"dmFsdWU=".to_vec())],
            ..file("usr/bin/la", b"x")
        },
        Spec {
            mode: 0o1777,
            ..dir("tmp")
        },
        hardlink("usr/bin/tool-link", "./usr/bin/tool"),
        symlink("usr/bin/sh", "/bin/busybox"),
        Spec {
            dev: (1, 3),
            mode: 0o666,
            ..Spec::new("dev/null", EntryType::Char)
        },
        Spec {
            dev: (7, 0),
            mode: 0o660,
            gid: 6,
            ..Spec::new("dev/loop0", EntryType::Block)
        },
        Spec {
            mode: 0o600,
            ..Spec::new("run/fifo", EntryType::Fifo)
        },
        Spec {
            gnu_long_name: true,
            ..file(&long_gnu, b"gnu")
        },
        Spec {
            pax: vec![("path".into(), long_pax.clone().into_bytes())],
            ..file("ignored-ustar-name", b"pax")
        },
        file("etc/.wh.removed", b""),
        file("etc/.wh..wh..opq", b""),
        // A later entry at the same path wins.
        file("etc/motd", b"old"),
        file("etc/motd", b"new"),
    ];
    let bytes = tar(&specs);
    let out = extract(&sb, &bytes).unwrap();
    sb.assert_untouched();
    assert_eq!(out.diff_id, Digest::of(Algorithm::Sha256, &bytes));
    assert_eq!(out.bytes, bytes.len() as u64);
    assert_eq!(out.skipped, 0);

    let tool = sb.path("usr/bin/tool");
    let meta = fs::metadata(&tool).unwrap();
    assert_eq!(fs::read(&tool).unwrap(), b"#!/bin/sh\necho tool\n");
    assert_eq!(meta.mtime(), 1_700_000_000);
    assert_eq!(meta.mtime_nsec(), 123_456_789);
    assert_eq!(xattr(&tool, "user.comment").unwrap(), b"hi\nthere");
    assert_eq!(
        xattr(&sb.path("usr/bin/la"), "user.la=x").unwrap(),
        b"value"
    );

    let link = fs::metadata(sb.path("usr/bin/tool-link")).unwrap();
    assert_eq!(link.ino(), meta.ino(), "hard link shares the inode");
    assert_eq!(meta.nlink(), 2);

    let sh = sb.path("usr/bin/sh");
    assert_eq!(fs::read_link(&sh).unwrap(), Path::new("/bin/busybox"));

    assert_eq!(fs::read(sb.path(&long_gnu)).unwrap(), b"gnu");
    assert_eq!(fs::read(sb.path(&long_pax)).unwrap(), b"pax");
    assert!(!sb.path("ignored-ustar-name").exists());

    for marker in ["etc/.wh.removed", "etc/.wh..wh..opq"] {
        let m = fs::symlink_metadata(sb.path(marker)).unwrap();
        assert!(m.is_file() && m.len() == 0, "{marker}");
    }
    assert_eq!(fs::read(sb.path("etc/motd")).unwrap(), b"new");

    let usr = fs::metadata(sb.path("usr")).unwrap();
    assert_eq!(usr.mode() & 0o7777, 0o750);
    assert_eq!(usr.mtime(), 1_500_000_000, "directory times applied last");
    let bin = fs::metadata(sb.path("usr/bin")).unwrap();
    assert_eq!(bin.mtime(), 1_500_000_001);
    assert_eq!(
        fs::metadata(sb.path("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    let implicit = fs::metadata(sb.path("etc")).unwrap();
    assert_eq!(implicit.mode() & 0o7777, 0o755);

    let fifo = fs::metadata(sb.path("run/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o600);

    if is_root() {
        assert_eq!(meta.mode() & 0o7777, 0o4755, "setuid survives the chown");
        assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
        assert_eq!((usr.uid(), usr.gid()), (1000, 1001));
        assert_eq!(xattr(&tool, "trusted.secret").unwrap(), b"t");
        assert_eq!(xattr(&tool, "security.capability").unwrap(), caps);
        let null = fs::metadata(sb.path("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, 0o666);
        let lo = fs::metadata(sb.path("dev/loop0")).unwrap();
        assert!(lo.file_type().is_block_device());
        assert_eq!(lo.rdev(), rustix::fs::makedev(7, 0));
        assert_eq!(lo.gid(), 6);
        let sh_meta = fs::symlink_metadata(&sh).unwrap();
        assert_eq!(sh_meta.uid(), 0);
    } else {
        eprintln!("not root: owners, trusted.* xattrs and devices are not checked");
    }

    let entries: Vec<_> = out
        .entries
        .iter()
        .map(|e| (e.path.to_str().unwrap(), e.kind))
        .collect();
    let nd = EntryKind::NonDir;
    let mut expected = vec![
        ("usr", EntryKind::Dir),
        ("usr/bin", EntryKind::Dir),
        ("usr/bin/tool", nd),
        ("usr/bin/la", nd),
        ("tmp", EntryKind::Dir),
        ("usr/bin/tool-link", nd),
        ("usr/bin/sh", nd),
    ];
    if is_root() {
        expected.extend([("dev/null", nd), ("dev/loop0", nd)]);
    }
    expected.extend([
        ("run/fifo", nd),
        (long_gnu.as_str(), nd),
        (long_pax.as_str(), nd),
        ("etc/.wh.removed", nd),
        ("etc/.wh..wh..opq", nd),
        ("etc/motd", nd),
    ]);
    assert_eq!(entries, expected);
    assert_eq!(
        out.files,
        expected.len() as u64 + 1,
        "motd was created twice"
    );
}

#[test]
fn root_entry_sets_the_root_directory() {
    let sb = Sandbox::new();
    let root = Spec {
        mode: 0o711,
        mtime: 1_234_567_890,
        ..dir("./")
    };
    let out = extract(&sb, &tar(&[root, file("./a", "x")])).unwrap();
    let meta = fs::metadata(&sb.dest).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o711);
    assert_eq!(meta.mtime(), 1_234_567_890);
    assert_eq!(out.entries, [LayerEntry::non_dir("a")]);
}

#[test]
fn later_entries_replace_earlier_ones_of_any_type() {
    let sb = Sandbox::new();
    let specs = [
        dir("a"),
        file("a/inner", "x"),
        dir("a/sub"),
        file("a", "now a file"), // replaces the whole directory tree
        file("b", "x"),
        dir("b"), // replaces the file
        file("b/c", "y"),
        symlink("s", "b"),
        hardlink("s", "b/c"), // replaces the symlink with a hard link
    ];
    let out = extract(&sb, &tar(&specs)).unwrap();
    assert_eq!(fs::read(sb.path("a")).unwrap(), b"now a file");
    assert_eq!(fs::read(sb.path("b/c")).unwrap(), b"y");
    let s = fs::symlink_metadata(sb.path("s")).unwrap();
    assert!(s.is_file());
    let names: Vec<_> = out
        .entries
        .iter()
        .map(|e| e.path.to_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["a", "b", "b/c", "s"],
        "entries under the replaced tree are gone"
    );
    sb.assert_untouched();
}

#[test]
fn sockets_and_unknown_types_are_skipped_and_counted() {
    let sb = Sandbox::new();
    let specs = [
        Spec::new("volume", EntryType::new(b'V')),
        Spec::new("weird", EntryType::new(b'Z')),
        file("kept", "k"),
    ];
    let out = extract(&sb, &tar(&specs)).unwrap();
    assert_eq!(out.skipped, 2);
    assert_eq!(out.entries, [LayerEntry::non_dir("kept")]);
    assert!(!sb.path("weird").exists());
}

#[test]
fn owners_map_to_the_caller_when_not_preserved() {
    let sb = Sandbox::new();
    let spec = Spec {
        uid: 4242,
        gid: 4343,
        mode: 0o2755,
        ..file("f", "x")
    };
    let opts = ExtractOptions {
        preserve_owner: false,
        ..ExtractOptions::default()
    };
    extract_layer(&tar(&[spec])[..], Compression::None, &sb.dest, &opts).unwrap();
    let meta = fs::metadata(sb.path("f")).unwrap();
    assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
    assert_eq!(meta.mode() & 0o7777, 0o2755);
}

#[test]
fn gzip_and_zstd_layers_extract_to_the_same_tree() {
    let bytes = tar(&[dir("x"), file("x/y", vec![9u8; 300_000])]);
    let want = Digest::of(Algorithm::Sha256, &bytes);
    for (blob, compression) in [
        (extract_support::gzip(&bytes), Compression::Gzip),
        (extract_support::zstd(&bytes), Compression::Zstd),
    ] {
        let sb = Sandbox::new();
        let out =
            extract_layer(&blob[..], compression, &sb.dest, &ExtractOptions::default()).unwrap();
        assert_eq!(out.diff_id, want);
        assert_eq!(fs::read(sb.path("x/y")).unwrap(), vec![9u8; 300_000]);
    }
}

#[test]
fn system_tar_output_round_trips() {
    // Cross-check against GNU tar's own PAX output (long names, xattrs, sub-second times).
    let src = tempfile::tempdir().unwrap();
    let long = "n".repeat(180);
    fs::create_dir_all(src.path().join("tree/deep")).unwrap();
    fs::write(src.path().join("tree/deep").join(&long), b"long").unwrap();
    std::os::unix::fs::symlink("deep", src.path().join("tree/link")).unwrap();
    fs::hard_link(
        src.path().join("tree/deep").join(&long),
        src.path().join("tree/hard"),
    )
    .unwrap();
    rustix::fs::setxattr(
        src.path().join("tree/hard").as_path(),
        "user.k",
        b"v\n",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let archive = src.path().join("t.tar");
    let status = std::process::Command::new("tar")
        .args([
            "--format=posix",
            "--xattrs",
            "--xattrs-include=user.*",
            "-C",
        ])
        .arg(src.path())
        .arg("-cf")
        .arg(&archive)
        .arg("tree")
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = fs::read(&archive).unwrap();
    let sb = Sandbox::new();
    extract(&sb, &bytes).unwrap();
    let f = sb.path("tree/deep").join(&long);
    assert_eq!(fs::read(&f).unwrap(), b"long");
    let orig = fs::metadata(src.path().join("tree/deep").join(&long)).unwrap();
    let got = fs::metadata(&f).unwrap();
    assert_eq!(
        (got.mtime(), got.mtime_nsec()),
        (orig.mtime(), orig.mtime_nsec())
    );
    assert_eq!(got.ino(), fs::metadata(sb.path("tree/hard")).unwrap().ino());
    assert_eq!(xattr(&f, "user.k").unwrap(), b"v\n");
    assert_eq!(
        fs::read_link(sb.path("tree/link")).unwrap(),
        Path::new("deep")
    );
}

#[test]
fn non_utf8_names_are_kept_as_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let sb = Sandbox::new();
    let out = extract(&sb, &tar(&[file(b"caf\xe9\n.txt", "x")])).unwrap();
    let name = OsStr::from_bytes(b"caf\xe9\n.txt");
    assert_eq!(fs::read(sb.dest.join(name)).unwrap(), b"x");
    assert_eq!(out.entries, [LayerEntry::non_dir(name)]);
}

#[test]
fn an_all_nul_owner_field_reads_as_root() {
    let sandbox = Sandbox::new();
    let mut bytes = tar(&[file("owned", "x")]);
    // uid and gid fields of the first header (offsets 108 and 116, 8 bytes each) all NUL,
    // then the header checksum (offset 148) recomputed as tar defines it.
    bytes[108..124].fill(0);
    bytes[148..156].fill(b' ');
    let sum: u32 = bytes[..512].iter().map(|&b| u32::from(b)).sum();
    bytes[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    extract(&sandbox, &bytes).unwrap();
    let meta = fs::symlink_metadata(sandbox.path("owned")).unwrap();
    if is_root() {
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
    }

    // A field that is neither a number nor blank is still an error naming the entry.
    let mut bytes = tar(&[file("garbled", "x")]);
    bytes[108..116].copy_from_slice(b"zz\0\0\0\0\0\0");
    bytes[148..156].fill(b' ');
    let sum: u32 = bytes[..512].iter().map(|&b| u32::from(b)).sum();
    bytes[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let err = extract(&Sandbox::new(), &bytes).unwrap_err().to_string();
    assert!(err.contains("garbled") && err.contains("uid"), "{err}");
}
