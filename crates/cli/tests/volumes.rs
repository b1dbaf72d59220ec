//! Volumes end to end under QEMU: host directories over virtio-fs (read-write and read-only, a
//! 100 MB file's checksum both ways, 10,000 small files each way, rename, unlink, chmod, mmap,
//! owners, the symlink escape attempt, two boxes sharing a read-only directory) and named
//! volumes (content kept across boxes and across stop/start, one read-write user at a time,
//! `volume rm` refused while used, the refusals at create).
//!
//! Skipped, with the reason, unless `BOXLITE_KERNEL_DIR`, `BOXLITE_GUEST_INITRAMFS` and
//! `BOXLITE_VIRTIOFSD` are set (`cargo xtask test` sets them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Run, boxlite};
use oci_layers::{Compression, LayoutBuilder};
use sha2::{Digest, Sha256};

/// The programs the `tools` image has, from the host (with their libraries).
const TOOLS: &[&str] = &[
    "/bin/dash",
    "/usr/bin/cat",
    "/usr/bin/echo",
    "/usr/bin/sha256sum",
    "/usr/bin/dd",
    "/usr/bin/mv",
    "/usr/bin/rm",
    "/usr/bin/chmod",
    "/usr/bin/chown",
    "/usr/bin/stat",
    "/usr/bin/ln",
    "/usr/bin/ls",
    "/usr/bin/mkdir",
    "/usr/bin/wc",
    "/usr/bin/head",
    "/usr/bin/sleep",
    "/usr/bin/sync",
];

/// A C program that writes a file through a shared mapping and reads it back through
/// another, the way a database in a volume would.
const MMAP_CHECK: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 1 << 20) != 0) { perror("open"); return 1; }
    char *p = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    for (int i = 0; i < (1 << 20); i++) p[i] = (char)('a' + i % 26);
    if (msync(p, 1 << 20, MS_SYNC) != 0) { perror("msync"); return 1; }
    munmap(p, 1 << 20);
    close(fd);
    fd = open(argv[1], O_RDONLY);
    char *q = mmap(0, 1 << 20, PROT_READ, MAP_SHARED, fd, 0);
    if (q == MAP_FAILED) { perror("mmap2"); return 1; }
    for (int i = 0; i < (1 << 20); i++) if (q[i] != (char)('a' + i % 26)) { puts("bad"); return 1; }
    puts("mmap ok");
    return 0;
}
"#;

/// A home with the `tools` image.
struct VolEnv {
    dir: tempfile::TempDir,
    kernel: PathBuf,
    initramfs: PathBuf,
    virtiofsd: PathBuf,
    boxes: std::cell::RefCell<Vec<String>>,
}

impl VolEnv {
    fn new() -> Option<VolEnv> {
        let (Some(kernel_dir), Some(initramfs), Some(virtiofsd)) = (
            std::env::var_os("BOXLITE_KERNEL_DIR"),
            std::env::var_os("BOXLITE_GUEST_INITRAMFS"),
            std::env::var_os("BOXLITE_VIRTIOFSD"),
        ) else {
            eprintln!(
                "skipped: set BOXLITE_KERNEL_DIR, BOXLITE_GUEST_INITRAMFS and BOXLITE_VIRTIOFSD \
                 to boot boxes with volumes (`cargo xtask test` does)"
            );
            return None;
        };
        let env = VolEnv {
            dir: tempfile::Builder::new()
                .prefix("bxv")
                .tempdir_in("/tmp")
                .unwrap(),
            kernel: PathBuf::from(kernel_dir).join("bzImage"),
            initramfs: initramfs.into(),
            virtiofsd: virtiofsd.into(),
            boxes: Default::default(),
        };
        let tree = env.path("tree");
        tools_tree(&tree);
        let layout = env.path("layout");
        LayoutBuilder::new()
            .layer_dir(&tree, Compression::Gzip)
            .env(["PATH=/bin"])
            .write_layout(&layout, "latest")
            .unwrap();
        env.run(&[
            "image",
            "import",
            layout.to_str().unwrap(),
            "--name",
            "tools",
        ])
        .ok();
        Some(env)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A new empty host directory.
    fn host_dir(&self, rel: &str) -> PathBuf {
        let dir = self.path(rel);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = boxlite();
        cmd.arg("--home")
            .arg(self.path("home"))
            .env("BOXLITE_KERNEL", &self.kernel)
            .env("BOXLITE_INITRAMFS", &self.initramfs)
            .env("BOXLITE_VIRTIOFSD", &self.virtiofsd)
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(args))
    }

    /// Creates and starts idle box `name` with `volumes` (`-v` values).
    fn start(&self, name: &str, volumes: &[String]) -> Run {
        self.boxes.borrow_mut().push(name.into());
        let mut args = vec!["create", "--name", name];
        for v in volumes {
            args.extend(["-v", v.as_str()]);
        }
        args.push("tools");
        self.run(&args).ok();
        self.run(&["start", name])
    }

    /// `sh -c script` in running box `name`.
    fn sh(&self, name: &str, script: &str) -> Run {
        self.run(&["exec", name, "sh", "-c", script])
    }

    /// `run --rm` of `sh -c script` with `volumes`.
    fn run_sh(&self, volumes: &[String], script: &str) -> Run {
        let mut args = vec!["run", "--rm"];
        for v in volumes {
            args.extend(["-v", v.as_str()]);
        }
        args.extend(["tools", "sh", "-c", script]);
        self.run(&args)
    }
}

impl Drop for VolEnv {
    fn drop(&mut self) {
        let mut args = vec!["rm", "-f"];
        let boxes = self.boxes.borrow();
        args.extend(boxes.iter().map(String::as_str));
        let _ = self.command(&args).output();
    }
}

/// The tools tree: [`TOOLS`] as `/bin/NAME` (dash as `sh`), their libraries, `/bin/mmapcheck`.
fn tools_tree(tree: &Path) {
    for host in TOOLS {
        let name = Path::new(host).file_name().unwrap().to_str().unwrap();
        let name = if name == "dash" { "sh" } else { name };
        let dest = tree.join("bin").join(name);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(host, &dest).unwrap();
        let ldd = Command::new("ldd").arg(host).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let dest = tree.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(lib, dest).unwrap();
        }
    }
    let source = tree.join("mmapcheck.c");
    std::fs::write(&source, MMAP_CHECK).unwrap();
    let status = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(tree.join("bin/mmapcheck"))
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success(), "compiling the mmap check");
    std::fs::remove_file(&source).unwrap();
    for d in ["etc", "root", "tmp", "dev", "proc"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}

/// `size` pseudo-random bytes (deterministic, incompressible enough for a checksum test).
fn random_bytes(size: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(size);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn volume(host: &Path, guest: &str) -> String {
    format!("{}:{guest}", host.display())
}

#[test]
fn a_host_directory_is_shared_both_ways() {
    let Some(env) = VolEnv::new() else { return };
    let data = env.host_dir("data");
    let big = random_bytes(100 << 20);
    std::fs::write(data.join("big"), &big).unwrap();
    std::fs::create_dir(data.join("from-host")).unwrap();
    for i in 0..10_000 {
        std::fs::write(data.join(format!("from-host/f{i}")), i.to_string()).unwrap();
    }
    for name in ["rename-me", "unlink-me", "chmod-me"] {
        std::fs::write(data.join(name), name).unwrap();
    }
    let script = "set -e; cd /data; \
        sha256sum big | head -c 64; echo; \
        dd if=big of=copy bs=1M status=none; \
        ls from-host | wc -l; \
        mkdir from-box; i=0; while [ $i -lt 10000 ]; do echo $i > from-box/f$i; i=$((i+1)); done; \
        mv rename-me renamed; rm unlink-me; chmod 600 chmod-me; \
        mmapcheck /data/mapped; \
        echo mine > owned; chown 1234:2345 owned; \
        sync";
    let run = env.run_sh(&[volume(&data, "/data")], script);
    let out = run.ok();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(sha256_hex(&big).as_str()), "{out}");
    assert_eq!(lines.next(), Some("10000"), "{out}");
    assert_eq!(lines.next(), Some("mmap ok"), "{out}");
    // What the box wrote is on the host, exactly.
    let copy = std::fs::read(data.join("copy")).unwrap();
    assert_eq!(sha256_hex(&copy), sha256_hex(&big));
    assert_eq!(
        std::fs::read_dir(data.join("from-box")).unwrap().count(),
        10_000
    );
    assert_eq!(
        std::fs::read_to_string(data.join("from-box/f9999")).unwrap(),
        "9999\n"
    );
    assert!(!data.join("rename-me").exists() && data.join("renamed").exists());
    assert!(!data.join("unlink-me").exists());
    let mode = std::fs::metadata(data.join("chmod-me"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mapped = std::fs::read(data.join("mapped")).unwrap();
    assert_eq!(mapped.len(), 1 << 20);
    assert_eq!(&mapped[..3], b"abc");
    // As root, the host sees the owners the guest set (docs/volumes.md).
    let owned = std::fs::metadata(data.join("owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1234, 2345));
}

#[test]
fn a_symlink_in_a_volume_resolves_inside_the_box() {
    let Some(env) = VolEnv::new() else { return };
    let data = env.host_dir("links");
    // One made on the host, pointing at the host's /etc; one the box makes, to its `/`.
    std::os::unix::fs::symlink("/etc", data.join("host-etc")).unwrap();
    let script = "ln -s / /data/escape; \
        cat /data/escape/etc/passwd; \
        cat /data/host-etc/passwd; \
        ls /data/escape/bin | head -n 1; \
        echo planted > /data/escape/tmp/planted";
    let run = env.run_sh(&[volume(&data, "/data")], script);
    // Both links led to the box's own files: the image's one-line passwd, twice.
    let out = run.ok();
    let passwd = "root:x:0:0:root:/root:/bin/sh\n";
    assert!(out.starts_with(&format!("{passwd}{passwd}")), "{out}");
    // The link is on the host as the box made it, and writing through it stayed in the box.
    assert_eq!(
        std::fs::read_link(data.join("escape")).unwrap(),
        PathBuf::from("/")
    );
    assert!(!Path::new("/tmp/planted").exists());
}

#[test]
fn a_read_only_volume_refuses_writes_and_two_boxes_share_it() {
    let Some(env) = VolEnv::new() else { return };
    let shared = env.host_dir("shared");
    std::fs::write(shared.join("note"), "shared words\n").unwrap();
    let ro = format!("{}:/ro:ro", shared.display());
    env.start("reader-a", std::slice::from_ref(&ro)).ok();
    env.start("reader-b", std::slice::from_ref(&ro)).ok();
    for name in ["reader-a", "reader-b"] {
        assert_eq!(env.sh(name, "cat /ro/note").ok(), "shared words\n");
        let run = env.sh(name, "echo x > /ro/new");
        assert!(!run.success, "{run:?}");
        assert!(run.stderr.contains("Read-only file system"), "{run:?}");
        let run = env.sh(name, "rm /ro/note");
        assert!(!run.success, "{run:?}");
    }
    assert!(!shared.join("new").exists());
    assert!(shared.join("note").exists());
    // The host's changes show in the boxes at once.
    std::fs::write(shared.join("later"), "later\n").unwrap();
    assert_eq!(env.sh("reader-b", "cat /ro/later").ok(), "later\n");
    // `inspect` lists the volumes.
    let inspect = env.run(&["inspect", "reader-a"]);
    let json: serde_json::Value = serde_json::from_str(inspect.ok()).unwrap();
    let volumes = &json["options"]["volumes"];
    assert_eq!(volumes[0]["guest_path"], "/ro", "{json}");
    assert_eq!(volumes[0]["read_only"], true, "{json}");
}

#[test]
fn a_named_volume_keeps_its_content_and_has_one_writer() {
    let Some(env) = VolEnv::new() else { return };
    env.run(&["volume", "create", "cache", "--size", "1"]).ok();
    env.run(&["volume", "create", "cache"])
        .fails_with(&["cache", "exists already"]);
    env.run_sh(
        &["cache:/cache".into()],
        "echo first > /cache/f; mkdir -p /cache/d; echo deep > /cache/d/g",
    )
    .ok();
    // Another box, read-only.
    let run = env.run_sh(&["cache:/cache:ro".into()], "cat /cache/f /cache/d/g");
    assert_eq!(run.ok(), "first\ndeep\n");
    // Across stop and start of one box.
    env.start("keeper", &["cache:/var/cache/app".into()]).ok();
    env.sh("keeper", "echo second >> /var/cache/app/f").ok();
    env.run(&["stop", "keeper"]).ok();
    env.run(&["start", "keeper"]).ok();
    assert_eq!(
        env.sh("keeper", "cat /var/cache/app/f").ok(),
        "first\nsecond\n"
    );
    // One read-write user at a time, and no reader beside a writer.
    env.start("second", &["cache:/c".into()]).fails_with(&[
        "volume cache",
        "box keeper",
        "read-write",
    ]);
    env.run(&["rm", "-f", "second"]).ok();
    env.start("third", &["cache:/c:ro".into()])
        .fails_with(&["volume cache", "box keeper"]);
    env.run(&["rm", "-f", "third"]).ok();
    // Not removable while a box lists it, running or not.
    env.run(&["volume", "rm", "cache"])
        .fails_with(&["volume cache", "keeper"]);
    env.run(&["stop", "keeper"]).ok();
    env.run(&["volume", "rm", "cache"])
        .fails_with(&["volume cache", "keeper", "remove it first"]);
    let ls = env.run(&["volume", "ls"]);
    assert!(
        ls.ok().contains("cache") && ls.ok().contains("keeper"),
        "{ls:?}"
    );
    let inspect = env.run(&["volume", "inspect", "cache"]);
    let json: serde_json::Value = serde_json::from_str(inspect.ok()).unwrap();
    assert_eq!(json["size_bytes"], 1u64 << 30, "{json}");
    assert_eq!(json["boxes"][0]["name"], "keeper", "{json}");
    env.run(&["rm", "keeper"]).ok();
    env.run(&["volume", "rm", "cache"]).ok();
    assert_eq!(env.run(&["volume", "ls"]).ok().lines().count(), 1);
}

#[test]
fn bad_volumes_are_refused_at_create() {
    let Some(env) = VolEnv::new() else { return };
    env.run(&["create", "-v", "nothing:/data", "tools"])
        .fails_with(&["no such volume: nothing", "boxlite volume create nothing"]);
    let missing = env.path("not-made");
    env.run(&["create", "-v", &volume(&missing, "/data"), "tools"])
        .fails_with(&["not-made", "create it first"]);
    let data = env.host_dir("here");
    env.run(&["create", "-v", &format!("{}:data", data.display()), "tools"])
        .fails_with(&["-v", "absolute path in the box"]);
    env.run(&["create", "-v", &volume(&data, "/"), "tools"])
        .fails_with(&["-v", "root"]);
    env.run(&["volume", "create", "bad/name"])
        .fails_with(&["bad/name", "letters, digits"]);
    env.run(&["volume", "rm", "nothing"])
        .fails_with(&["no such volume: nothing"]);
    assert_eq!(env.run(&["ls", "-a", "--json"]).ok().trim(), "[]");
}
