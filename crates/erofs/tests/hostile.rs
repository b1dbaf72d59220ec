//! Hostile layers: every one is refused with a clear error or written safely; none panics.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{Layer, Mount, can_mount, fsck, try_write_image, write_image};
use erofs::{Error, ErrorKind, Limit};
use tar::EntryType;

/// A tar written header by header, so entries can carry what the builder refuses.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn entry(&mut self, name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> &mut Self {
        self.sized(name, kind, link, data, data.len() as u64, |_| {})
    }

    fn sized(
        &mut self,
        name: &[u8],
        kind: EntryType,
        link: &[u8],
        data: &[u8],
        size: u64,
        edit: impl FnOnce(&mut tar::Header),
    ) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(1);
        h.set_uid(0);
        h.set_gid(0);
        edit(&mut h);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(512), 0);
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), EntryType::Regular, b"", data)
    }

    fn pax(&mut self, records: &[u8]) -> &mut Self {
        self.entry(b"././@PaxHeader", EntryType::XHeader, b"", records)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.0.clone();
        out.extend_from_slice(&[0; 1024]);
        out
    }
}

fn rec(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn refused(tar: &[u8]) -> Error {
    match try_write_image(tar) {
        Ok(image) => panic!("accepted: {:?}", image.summary),
        Err(e) => e,
    }
}

fn assert_entry_error(tar: &[u8], entry: &str, words: &str) {
    let e = refused(tar);
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    match &e {
        Error::Entry { entry: got, reason } => {
            assert_eq!(got, entry, "{e}");
            assert!(reason.contains(words), "{e}");
        }
        other => panic!("not an entry error: {other}"),
    }
}

#[test]
fn truncated_archives_fail_cleanly() {
    let mut layer = Layer::default();
    layer
        .file("a", &[7; 5000])
        .dir("d", 0o755)
        .file("d/b", b"bee");
    let tar = layer.bytes();
    for cut in (0..tar.len()).step_by(7) {
        // Cuts at an entry boundary are a shorter archive; all others must be refused.
        let _ = try_write_image(&tar[..cut]);
    }
    let e = refused(&tar[..512 + 3000]);
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(
        e.to_string().contains("ends within the entry's data"),
        "{e}"
    );
    let e = refused(&tar[..700]);
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
    let e = refused(&[0x41; 2000]);
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
}

#[test]
fn absurd_sizes_are_refused_before_writing() {
    let tar = Raw::default()
        .sized(b"huge", EntryType::Regular, b"", b"", 1 << 40, |_| {})
        .bytes();
    let e = refused(&tar);
    assert!(
        matches!(
            e,
            Error::Limit {
                limit: Limit::DataBytes,
                ..
            }
        ),
        "{e}"
    );
    let tar = Raw::default()
        .sized(b"big", EntryType::Regular, b"", b"", 1 << 30, |_| {})
        .bytes();
    assert_eq!(refused(&tar).kind(), ErrorKind::Invalid);
    let huge_pax = Raw::default()
        .pax(&rec("comment", &vec![b'x'; 2 << 20]))
        .file("a", b"")
        .bytes();
    let e = refused(&huge_pax);
    assert!(
        matches!(
            e,
            Error::Limit {
                limit: Limit::EntryMetadata,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn names_that_leave_the_layer_are_refused() {
    for bad in ["../etc/passwd", "a/../../x", "a/..", "./../x"] {
        let tar = Raw::default().file(bad, b"x").bytes();
        assert_entry_error(&tar, bad, "`..`");
    }
    let tar = Raw::default()
        .file("a", b"x")
        .entry(b"b", EntryType::Link, b"../a", b"")
        .bytes();
    assert_entry_error(&tar, "b", "`..`");
    // Absolute names are relative to the layer root, as tar takes them.
    let image = write_image(&Raw::default().file("/etc/abs", b"x").bytes());
    assert_eq!(image.summary.files, 1);
    if can_mount() {
        let m = Mount::erofs(&image.path);
        assert_eq!(std::fs::read(m.path().join("etc/abs")).unwrap(), b"x");
    }
}

#[test]
fn hard_links_need_an_earlier_non_directory() {
    let tar = Raw::default()
        .entry(b"l", EntryType::Link, b"missing", b"")
        .bytes();
    assert_entry_error(&tar, "l", "no earlier entry");
    let tar = Raw::default()
        .entry(b"l", EntryType::Link, b"later", b"")
        .file("later", b"x")
        .bytes();
    assert_entry_error(&tar, "l", "no earlier entry");
    let tar = Raw::default()
        .entry(b"d/", EntryType::Directory, b"", b"")
        .entry(b"l", EntryType::Link, b"d", b"")
        .bytes();
    assert_entry_error(&tar, "l", "directory");
    let tar = Raw::default()
        .file("gone/x", b"x")
        .file("gone", b"file now")
        .entry(b"l", EntryType::Link, b"gone/x", b"")
        .bytes();
    assert_entry_error(&tar, "l", "no earlier entry");
}

#[test]
fn symlink_loops_are_stored_not_followed() {
    let mut layer = Layer::default();
    layer
        .symlink("a", "b")
        .symlink("b", "a")
        .symlink("self", "self")
        .symlink("up", "../../../../etc")
        .symlink("abs", "/etc/shadow");
    let image = write_image(&layer.bytes());
    assert_eq!(image.summary.symlinks, 5);
    fsck(&image.path);
    // Entries through a symlink are refused: the guest would resolve it elsewhere.
    let tar = Raw::default()
        .entry(b"up", EntryType::Symlink, b"/etc", b"")
        .file("up/passwd", b"x")
        .bytes();
    assert_entry_error(&tar, "up/passwd", "symlink \"up\"");
    let tar = Raw::default().file("f", b"x").file("f/g", b"y").bytes();
    assert_entry_error(&tar, "f/g", "not a directory");
    let tar = Raw::default()
        .entry(b"s", EntryType::Symlink, b"", b"")
        .bytes();
    assert_entry_error(&tar, "s", "target is empty");
    let long = rec("linkpath", &vec![b'l'; 5000]);
    let tar = Raw::default()
        .pax(&long)
        .entry(b"s", EntryType::Symlink, b"", b"")
        .bytes();
    assert_entry_error(&tar, "s", "over 4095 bytes");
}

#[test]
fn malformed_entries_are_refused() {
    let tar = Raw::default()
        .entry(b"./", EntryType::Regular, b"", b"x")
        .bytes();
    assert_entry_error(&tar, "", "layer root");
    let tar = Raw::default().file("a/.wh.", b"").bytes();
    assert_entry_error(&tar, "a/.wh.", "naming no entry");
    let tar = Raw::default().file(".wh..", b"").bytes();
    assert_entry_error(&tar, ".wh..", "naming no entry");
    let tar = Raw::default()
        .entry(b".wh.d/", EntryType::Directory, b"", b"")
        .bytes();
    assert_entry_error(&tar, ".wh.d", "markers are plain files");
    let tar = Raw::default().file(".wh.x/y", b"").bytes();
    assert_entry_error(&tar, ".wh.x/y", "beneath the whiteout marker");
    let tar = Raw::default()
        .sized(b"u", EntryType::Regular, b"", b"", 0, |h| {
            h.set_uid(u64::from(u32::MAX))
        })
        .bytes();
    assert_entry_error(&tar, "u", "out-of-range uid");
    let tar = Raw::default()
        .pax(&rec("gid", b"1099511627776"))
        .file("g", b"")
        .bytes();
    assert_entry_error(&tar, "g", "out-of-range gid");
    let tar = Raw::default()
        .sized(b"dev", EntryType::Char, b"", b"", 0, |h| {
            h.set_device_major(5000).unwrap()
        })
        .bytes();
    assert_entry_error(&tar, "dev", "device number");
    let tar = Raw::default().pax(b"5 a=b").file("p", b"").bytes();
    assert!(matches!(refused(&tar), Error::Entry { .. }));
    let many: Vec<u8> = (0..200)
        .flat_map(|i| rec(&format!("SCHILY.xattr.user.{i}"), b"v"))
        .collect();
    let tar = Raw::default().pax(&many).file("x", b"").bytes();
    assert!(refused(&tar).to_string().contains("extended attributes"));
    let tar = Raw::default()
        .file(&format!("{}/x", "n".repeat(97)), b"")
        .bytes();
    assert!(try_write_image(&tar).is_ok());
}

#[test]
fn empty_and_odd_archives_make_valid_images() {
    for tar in [
        Vec::new(),
        vec![0; 1024],
        Raw::default()
            .entry(b"sock", EntryType::new(b'9'), b"", b"")
            .bytes(),
        Raw::default()
            .entry(b"g", EntryType::XGlobalHeader, b"", &rec("comment", b"hi"))
            .bytes(),
    ] {
        let image = write_image(&tar);
        assert_eq!(image.summary.dirs, 1);
        fsck(&image.path);
        if can_mount() {
            let m = Mount::erofs(&image.path);
            assert_eq!(std::fs::read_dir(m.path()).unwrap().count(), 0);
        }
    }
}
