//! What other local users cannot do to a user's boxes (real boxes under QEMU), and what a
//! full host disk does to a box. Root only: the other user is uid 65534 (`setpriv`), and the
//! full disk a small tmpfs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use boxlite::{BoxCommand, Error, Runtime};
use support::Fixture;

/// The uid and gid the other user runs as.
const OTHER: &str = "65534";

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// Runs this binary again as uid/gid 65534 in `role` against `target`; its stdout.
fn as_other_user(role: &str, target: &Path) -> String {
    let out = Command::new("setpriv")
        .args(["--reuid", OTHER, "--regid", OTHER, "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "role", "--nocapture", "--test-threads=1"])
        .env("BOXLITE_ACCESS_ROLE", role)
        .env("BOXLITE_ACCESS_TARGET", target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "role {role} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Not a test of its own: what the other user tries.
#[tokio::test]
async fn role() {
    let Ok(role) = std::env::var("BOXLITE_ACCESS_ROLE") else {
        return;
    };
    let target = PathBuf::from(std::env::var_os("BOXLITE_ACCESS_TARGET").unwrap());
    match role.as_str() {
        "open" => {
            let err = Runtime::open(boxlite::RuntimeOptions::new(&target)).unwrap_err();
            println!("OPEN:{}", matches!(err, Error::UnsafeHome { .. }));
            println!("{err}");
        }
        "connect" => {
            // The kernel lets the connection through (the test opened the path); the
            // supervisor must refuse it by the peer's uid.
            let stream = tokio::net::UnixStream::connect(&target).await.unwrap();
            let greeted = tokio::time::timeout(
                Duration::from_secs(30),
                protocol::client::Client::handshake(stream),
            )
            .await
            .unwrap();
            println!("GREETED:{}", greeted.is_ok());
        }
        other => panic!("unknown role {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_can_neither_read_nor_reach_a_box() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let Some(fx) = Fixture::new() else { return };
    let rt = fx.runtime();
    let mut options = support::named("private");
    options.env = vec![("API_KEY".into(), "secret".into())];
    let bx = rt.create(options).await.unwrap();
    bx.start().await.unwrap();
    let home = fx.home();
    let dir = home.join("boxes").join(&bx.id()[..16]);
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("state.db")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    for file in [
        "box.sock",
        "console.log",
        "supervisor.log",
        "vm.log",
        "disk.ext4",
    ] {
        let m = mode(&dir.join(file));
        assert_eq!(m & 0o077, 0, "{file} is {m:o}");
    }
    // The agent channel is an inherited socket pair: there is no path to race for.
    assert!(!dir.join("agent.sock").exists());

    // Even with every directory opened up, another user's runtime refuses a home it does
    // not own.
    for d in [fx.dir.path(), home.as_path(), &home.join("boxes"), &dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let said = as_other_user("open", &home);
    assert!(said.contains("OPEN:true"), "{said}");
    // And with the socket itself opened up, the supervisor refuses the other user by uid.
    std::fs::set_permissions(dir.join("box.sock"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let said = as_other_user("connect", &dir.join("box.sock"));
    assert!(said.contains("GREETED:false"), "{said}");
    // The box still serves its own user; reopening the runtime made the home private again.
    let rt = fx.runtime();
    assert_eq!(mode(&home), 0o700);
    let out = rt
        .get("private")
        .await
        .unwrap()
        .exec(BoxCommand::new("echo").arg("mine"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"mine\n");
    rt.remove("private", boxlite::RemoveMode::Kill)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_out_of_a_box_plants_nothing_dangerous_on_the_host() {
    let Some(fx) = Fixture::new() else { return };
    let rt = fx.runtime();
    let bx = rt.create(support::named("hostile")).await.unwrap();
    bx.start().await.unwrap();
    // What a hostile guest leaves for the host to copy: a setuid shell, a world-writable
    // block device for the host's first disk, a FIFO, files owned by another user.
    let planted = bx
        .exec(BoxCommand::new("sh").args([
            "-c",
            "set -e; mkdir /out; cat /bin/sh > /out/shell; chmod 6755 /out/shell; \
             mknod /out/sda b 8 0; chmod 666 /out/sda; mkfifo /out/fifo; \
             echo data > /out/file; chmod 644 /out/file",
        ]))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert!(planted.status.success(), "{planted:?}");
    let dest = fx.dir.path().join("copied");
    std::fs::create_dir(&dest).unwrap();
    let report = bx.copy_out("/out", &dest).await.unwrap();
    let out = dest.join("out");
    let shell = std::fs::metadata(out.join("shell")).unwrap();
    assert_eq!(
        shell.mode() & 0o6000,
        0,
        "set-id bits kept: {:o}",
        shell.mode()
    );
    assert_eq!(shell.uid(), rustix::process::geteuid().as_raw());
    assert!(!out.join("sda").exists() && std::fs::symlink_metadata(out.join("sda")).is_err());
    assert!(std::fs::symlink_metadata(out.join("fifo")).is_err());
    assert_eq!(std::fs::read_to_string(out.join("file")).unwrap(), "data\n");
    assert_eq!(report.specials_skipped, 2, "{report:?}");
    let mut skipped: Vec<_> = report
        .special_paths
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    skipped.sort();
    assert_eq!(skipped, ["fifo", "sda"]);
    // Caps are the caller's: past them the copy fails and leaves nothing behind.
    let mut tight = boxlite::CopyOutOptions::default();
    tight.max_entries = 2;
    let capped = fx.dir.path().join("capped");
    std::fs::create_dir(&capped).unwrap();
    let err = bx.copy_out_with("/out", &capped, &tight).await.unwrap_err();
    assert!(err.to_string().contains("entries"), "{err}");
    assert_eq!(std::fs::read_dir(&capped).unwrap().count(), 0);
    rt.remove("hostile", boxlite::RemoveMode::Kill)
        .await
        .unwrap();
}

/// Unmounts the tmpfs when the test ends.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_host_disk_is_an_io_error_in_the_guest_not_a_hung_box() {
    if !is_root() {
        eprintln!("skipped: needs root to mount a small filesystem");
        return;
    }
    let Some((kernel, initramfs)) = support::guest() else {
        return;
    };
    // A home on a 96 MiB filesystem: the image and the box's sparse disk fit, a box that
    // writes 200 MB does not.
    let mount = Mount(
        tempfile::Builder::new()
            .prefix("bxfull")
            .tempdir_in("/tmp")
            .unwrap()
            .keep(),
    );
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96m", "tmpfs"])
        .arg(&mount.0)
        .status()
        .unwrap();
    assert!(status.success());
    let home = mount.0.join("home");
    let rt = Runtime::open(support::options_for(&home, &kernel, &initramfs)).unwrap();
    let layout = mount.0.join("layout");
    support::tools_image()
        .write_layout(&layout, "latest")
        .unwrap();
    rt.import_image(&layout, Some(support::IMAGE)).unwrap();
    std::fs::remove_dir_all(&layout).unwrap();
    let bx = rt.create(support::named("full")).await.unwrap();
    bx.start().await.unwrap();
    // Whatever happens below, the box's supervisor (and with it the VM) ends with the test:
    // on a full disk the runtime cannot record a stop.
    let _supervisor = KillOnDrop(bx.info().await.unwrap().supervisor_pid);
    let fill = tokio::time::timeout(
        Duration::from_secs(300),
        bx.exec(BoxCommand::new("sh").args([
            "-c",
            "head -c 200000000 /dev/zero > /root/fill; echo write=$?; sync /root/fill; echo sync=$?",
        ]))
        .await
        .unwrap()
        .output(),
    )
    .await
    .expect("the box hung on a full host disk")
    .unwrap();
    let said = String::from_utf8_lossy(&fill.stdout);
    assert!(
        !said.contains("write=0") || !said.contains("sync=0"),
        "the guest saw no error: {said}"
    );
    // The box is still usable.
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        bx.exec(BoxCommand::new("echo").arg("alive"))
            .await
            .unwrap()
            .output(),
    )
    .await
    .expect("the box hung after the disk filled")
    .unwrap();
    assert_eq!(out.stdout, b"alive\n");
}

/// Kills a box's supervisor (its VM dies with it) when dropped.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) on the pid of the test box's supervisor, recorded while it ran.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}
