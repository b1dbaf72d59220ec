//! newc output checked byte for byte and against GNU cpio and gzip.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};

use super::*;

/// Pipes `input` through `cmd` and returns its stdout, failing on a non-zero exit.
fn filter(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An archive with one entry of every kind, as an initramfs would hold.
fn sample<W: Write>(a: &mut Archive<W>) {
    a.dir("dev", 0o755).unwrap();
    a.char_dev("dev/console", 0o600, 5, 1).unwrap();
    a.block_dev("dev/vda", 0o660, 254, 0).unwrap();
    a.dir("/bin", 0o755).unwrap();
    a.file("bin/agent", 0o755, b"\x7fELF pretend").unwrap();
    a.symlink("init", "bin/agent").unwrap();
    a.dir("etc", 0o700).unwrap();
    a.file("etc/hostname", 0o644, b"box\n").unwrap();
    a.file("etc/empty", 0o600, b"").unwrap();
}

fn listing(archive: &[u8]) -> Vec<String> {
    let out = filter(
        Command::new("cpio")
            .args(["-itv", "--quiet"])
            .env("TZ", "UTC")
            .env("LC_ALL", "C"),
        archive,
    );
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn gnu_cpio_lists_every_entry_kind() {
    let mut a = gzip(Vec::new());
    sample(&mut a);
    let gz = a.finish().unwrap().finish().unwrap();
    let raw = filter(Command::new("gzip").arg("-dc"), &gz);
    assert_eq!(
        listing(&raw),
        [
            "drwxr-xr-x 2 root root 0 Jan 1 1970 dev",
            "crw------- 1 root root 5, 1 Jan 1 1970 dev/console",
            "brw-rw---- 1 root root 254, 0 Jan 1 1970 dev/vda",
            "drwxr-xr-x 2 root root 0 Jan 1 1970 bin",
            "-rwxr-xr-x 1 root root 12 Jan 1 1970 bin/agent",
            "lrwxrwxrwx 1 root root 9 Jan 1 1970 init -> bin/agent",
            "drwx------ 2 root root 0 Jan 1 1970 etc",
            "-rw-r--r-- 1 root root 4 Jan 1 1970 etc/hostname",
            "-rw------- 1 root root 0 Jan 1 1970 etc/empty",
        ]
    );
}

#[test]
fn gnu_cpio_extracts_contents_modes_links_and_devices() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: extracting device nodes needs root");
        return;
    }
    let mut a = Archive::new(Vec::new());
    sample(&mut a);
    let raw = a.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    filter(
        Command::new("cpio")
            .args(["-idm", "--quiet", "--no-absolute-filenames"])
            .current_dir(dir.path()),
        &raw,
    );
    let root = dir.path();
    assert_eq!(
        std::fs::read(root.join("bin/agent")).unwrap(),
        b"\x7fELF pretend"
    );
    assert_eq!(std::fs::read(root.join("etc/hostname")).unwrap(), b"box\n");
    assert_eq!(std::fs::read(root.join("etc/empty")).unwrap(), b"");
    let mode = |p: &str| {
        std::fs::symlink_metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("bin/agent"), 0o755);
    assert_eq!(mode("etc/hostname"), 0o644);
    assert_eq!(mode("etc"), 0o700);
    assert_eq!(
        std::fs::read_link(root.join("init")).unwrap(),
        std::path::Path::new("bin/agent")
    );
    let console = std::fs::symlink_metadata(root.join("dev/console")).unwrap();
    assert!(console.file_type().is_char_device());
    assert_eq!(console.rdev(), rustix::fs::makedev(5, 1));
    let vda = std::fs::symlink_metadata(root.join("dev/vda")).unwrap();
    assert!(vda.file_type().is_block_device());
    assert_eq!(vda.rdev(), rustix::fs::makedev(254, 0));
}

#[test]
fn bytes_follow_the_newc_layout() {
    let mut a = Archive::new(Vec::new());
    a.file("ab", 0o644, b"xyz").unwrap();
    let raw = a.finish().unwrap();
    let mut want = String::new();
    want.push_str("070701");
    // ino mode uid gid nlink mtime size devmaj devmin rdevmaj rdevmin namesize check
    for f in [1, 0o100644, 0, 0, 1, 0, 3, 0, 0, 0, 0, 3, 0] {
        want.push_str(&format!("{f:08X}").to_lowercase());
    }
    // 110-byte header + "ab\0" = 113, padded to 116; 3 data bytes padded to 4.
    let mut want = want.into_bytes();
    want.extend_from_slice(b"ab\0\0\0\0");
    want.extend_from_slice(b"xyz\0");
    assert_eq!(&raw[..want.len()], &want[..]);
    let trailer = &raw[want.len()..];
    assert!(trailer.starts_with(b"070701"));
    assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
    assert_eq!(raw.len() % 4, 0, "archive ends on a 4-byte boundary");
}

#[test]
fn rejects_names_the_kernel_would_mishandle() {
    let mut a = Archive::new(Vec::new());
    a.dir("dev", 0o755).unwrap();
    let msg = |r: Result<()>| r.unwrap_err().to_string();
    assert!(msg(a.file("usr/bin/x", 0o755, b"")).contains("add directory \"usr/bin\""));
    assert!(msg(a.dir("dev", 0o755)).contains("already"));
    assert!(msg(a.dir("/dev/", 0o755)).contains("normalised"));
    assert!(msg(a.file("dev/../x", 0o644, b"")).contains("normalised"));
    assert!(msg(a.file("./x", 0o644, b"")).contains("normalised"));
    assert!(msg(a.file("/", 0o644, b"")).contains("empty"));
    assert!(msg(a.file("a\0b", 0o644, b"")).contains("NUL"));
    assert!(msg(a.symlink("dev/l", "")).contains("invalid target"));
    let long = "x".repeat(MAX_NAME);
    assert!(msg(a.file(&long, 0o644, b"")).contains("PATH_MAX"));
    // A rejected entry writes nothing: the archive still lists only `dev`.
    let raw = a.finish().unwrap();
    assert_eq!(listing(&raw), ["drwxr-xr-x 2 root root 0 Jan 1 1970 dev"]);
}
