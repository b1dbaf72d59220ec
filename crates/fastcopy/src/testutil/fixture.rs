//! A rich source tree: every kind of entry, odd modes and owners, hard links, xattrs and times.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};

/// `security.capability` v2 granting `cap_net_bind_service` (bit 10), effective.
pub(crate) const CAPABILITY: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, // magic: VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
    0x00, 0x04, 0x00, 0x00, // permitted (low word)
    0x00, 0x00, 0x00, 0x00, // inheritable (low word)
    0x00, 0x00, 0x00, 0x00, // permitted (high word)
    0x00, 0x00, 0x00, 0x00, // inheritable (high word)
];

/// The atime every symlink gets, checked on copies (reading a link moves the source's atime).
pub(crate) const SYMLINK_ATIME: Timespec = Timespec {
    tv_sec: 1_400_000_000,
    tv_nsec: 424_242_424,
};

/// Deterministic, non-repeating-per-page content.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

fn write(path: &Path, data: &[u8], mode: u32) {
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    rustix::fs::chownat(
        CWD,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn setxattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", path.display()));
}

/// Builds the rich fixture under `root` (created); root-only parts only when running as root.
///
/// Returns the number of regular files with data, which a copy reports per strategy.
pub(crate) fn build(root: &Path) -> u64 {
    let as_root = rustix::process::geteuid().is_root();
    let p = |rel: &str| root.join(rel);
    fs::create_dir_all(root).unwrap();
    let mut with_data = 0;

    // Regular files of several sizes, one with holes.
    write(&p("empty"), b"", 0o644);
    for (name, len, seed) in [
        ("one", 1, 1),
        ("page", 4096, 2),
        ("odd", 65_537, 3),
        ("big", (3 << 20) + 123, 4),
    ] {
        write(&p(name), &pattern(len, seed), 0o644);
        with_data += 1;
    }
    let sparse = fs::File::create_new(p("sparse")).unwrap();
    sparse.write_all_at(b"start", 0).unwrap();
    sparse.write_all_at(&pattern(10_000, 9), 5 << 20).unwrap();
    sparse.set_len(12 << 20).unwrap();
    with_data += 1;
    let weird = root.join(OsStr::from_bytes(b"weird name \n\xff"));
    write(&weird, b"weird", 0o600);
    with_data += 1;
    write(&p("setuid"), b"#!/bin/sh\n", 0o4755);
    write(&p("setgid"), b"#!/bin/sh\n", 0o2711);
    with_data += 2;

    // Directories, nested, with special modes; a read-only one with content.
    fs::create_dir_all(p("dir_a/nested/deeper/deepest")).unwrap();
    write(&p("dir_a/nested/deeper/deepest/file"), b"deep", 0o640);
    with_data += 1;
    fs::create_dir(p("dir_b")).unwrap();
    fs::create_dir(p("sticky")).unwrap();
    fs::set_permissions(p("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(p("setgid_dir")).unwrap();
    fs::set_permissions(p("setgid_dir"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::create_dir(p("readonly")).unwrap();
    write(&p("readonly/inside"), b"ro", 0o444);
    with_data += 1;
    fs::set_permissions(p("readonly"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(p("dir_a"), fs::Permissions::from_mode(0o750)).unwrap();

    // Hard link groups: three names across directories, and a pair in one directory.
    write(&p("hl_a"), &pattern(5000, 5), 0o644);
    with_data += 1;
    fs::hard_link(p("hl_a"), p("dir_b/hl_b")).unwrap();
    fs::hard_link(p("hl_a"), p("dir_a/link_group_1")).unwrap();
    write(&p("pair_1"), b"pair", 0o600);
    with_data += 1;
    fs::hard_link(p("pair_1"), p("pair_2")).unwrap();

    // Symlinks: relative, absolute, dangling, self-referencing, a loop, to a directory, hard-linked.
    fs::create_dir(p("links")).unwrap();
    symlink("../one", p("links/rel")).unwrap();
    symlink("/etc/passwd", p("links/abs")).unwrap();
    symlink("does/not/exist", p("links/dangling")).unwrap();
    symlink("thunar", p("links/thunar")).unwrap();
    symlink("loop_b", p("links/loop_a")).unwrap();
    symlink("loop_a", p("links/loop_b")).unwrap();
    symlink("../dir_a", p("links/dir_link")).unwrap();
    rustix::fs::linkat(
        CWD,
        p("links/rel"),
        CWD,
        p("links/rel_hard"),
        AtFlags::empty(),
    )
    .unwrap();

    // Special files: a fifo and a unix socket (both unprivileged).
    fs::create_dir(p("specials")).unwrap();
    rustix::fs::mknodat(
        CWD,
        p("specials/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    rustix::fs::chmodat(
        CWD,
        p("specials/fifo"),
        Mode::from_raw_mode(0o640),
        AtFlags::empty(),
    )
    .unwrap();
    drop(std::os::unix::net::UnixListener::bind(p("specials/sock")).unwrap());

    // User extended attributes on a file and a directory.
    write(&p("user_xattrs"), b"x", 0o644);
    with_data += 1;
    setxattr(&p("user_xattrs"), "user.alpha", b"alpha");
    setxattr(&p("user_xattrs"), "user.bin", b"\0\x01\xff");
    setxattr(&p("user_xattrs"), "user.empty", b"");
    setxattr(&p("dir_b"), "user.dir", b"d");

    if as_root {
        // Devices.
        let dev = |major, minor| rustix::fs::makedev(major, minor);
        rustix::fs::mknodat(
            CWD,
            p("specials/null"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            dev(1, 3),
        )
        .unwrap();
        rustix::fs::chmodat(
            CWD,
            p("specials/null"),
            Mode::from_raw_mode(0o666),
            AtFlags::empty(),
        )
        .unwrap();
        rustix::fs::mknodat(
            CWD,
            p("specials/blk"),
            FileType::BlockDevice,
            Mode::from_raw_mode(0o660),
            dev(7, 200),
        )
        .unwrap();
        // Odd owners on every kind of entry; chown before chmod, as chown clears setuid.
        for (rel, uid, gid) in [
            ("odd", 4321, 8765),
            ("dir_a", 1234, 5678),
            ("hl_a", 1234, 5678),
            ("links/abs", 1111, 2222),
            ("links/thunar", 3333, 4444),
            ("specials/fifo", 55, 66),
            ("specials/blk", 0, 6),
        ] {
            chown(&p(rel), uid, gid);
        }
        chown(&p("setuid"), 1000, 1000);
        fs::set_permissions(p("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
        chown(&p("setgid"), 0, 50);
        fs::set_permissions(p("setgid"), fs::Permissions::from_mode(0o2711)).unwrap();
        // A file nobody may read but root, and privileged attributes.
        write(&p("noperm"), b"secret", 0o000);
        with_data += 1;
        write(&p("caps"), b"\x7fELF", 0o755);
        with_data += 1;
        chown(&p("caps"), 1000, 1000);
        setxattr(&p("caps"), "security.capability", &CAPABILITY);
        setxattr(&p("user_xattrs"), "trusted.overlay.opaque", b"y");
        setxattr(&p("dir_a"), "trusted.dir", b"t");
        setxattr(&p("links/abs"), "trusted.link", b"l");
    }

    set_times(root);
    with_data
}

/// Gives every entry distinct atime and mtime with nanoseconds, after everything is written.
fn set_times(root: &Path) {
    let mut paths = vec![root.to_path_buf()];
    let mut i = 0;
    while i < paths.len() {
        let path = paths[i].clone();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            let mut children: Vec<PathBuf> = fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            children.sort();
            paths.extend(children);
        }
        i += 1;
    }
    for (n, path) in paths.iter().enumerate() {
        let n = n as i64;
        let is_link = fs::symlink_metadata(path).unwrap().file_type().is_symlink();
        let times = Timestamps {
            last_access: if is_link {
                SYMLINK_ATIME
            } else {
                Timespec {
                    tv_sec: 1_500_000_000 + n * 3600,
                    tv_nsec: 1000 + n,
                }
            },
            last_modification: Timespec {
                tv_sec: 1_600_000_000 + n * 86_400,
                tv_nsec: 999_999_000 - n * 1000 + 7,
            },
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }
}
