//! Volumes mounted by the agent inside the box's root: ext4 images on loop devices stand in for
//! a VM's virtio disks (root only; the agent runs in its own mount namespace).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use protocol::client::Client;
use protocol::{CAPABILITY_MOUNT, Error, ErrorKind, MountSource, VolumeMount};

use support::{Agent, TestRoot, run, sh};

fn skip() -> bool {
    if !support::is_root() {
        eprintln!("skipped: mounting volumes needs root (chroot, loop devices, mount)");
        return true;
    }
    for tool in ["mkfs.ext4", "losetup", "debugfs", "dumpe2fs"] {
        let found = Command::new(tool).arg("-V").output().is_ok();
        if !found {
            eprintln!("skipped: {tool} is not installed");
            return true;
        }
    }
    false
}

/// An ext4 image file attached to a loop device, detached on drop.
struct Image {
    _dir: tempfile::TempDir,
    file: PathBuf,
    device: String,
}

impl Image {
    /// An empty 8 MiB ext4 filesystem on a fresh loop device; `None` (the test skips) where
    /// this host cannot attach one (a container without loop devices).
    fn new() -> Option<Image> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("volume.ext4");
        std::fs::File::create(&file)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "skipped: losetup cannot attach an image here: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        let device = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Some(Image {
            _dir: dir,
            file,
            device,
        })
    }

    fn volume(&self, path: &str, read_only: bool) -> VolumeMount {
        VolumeMount {
            source: MountSource::Disk {
                device: self.device.clone(),
                fstype: "ext4".into(),
            },
            path: path.into(),
            read_only,
        }
    }

    /// A file of the filesystem, read by debugfs from the image (no mount needed).
    fn read(&self, path: &str) -> String {
        let out = Command::new("debugfs")
            .args(["-R", &format!("cat {path}")])
            .arg(&self.file)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the filesystem was unmounted cleanly (its state says "clean").
    fn clean(&self) -> bool {
        let out = Command::new("dumpe2fs")
            .arg("-h")
            .arg(&self.file)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("Filesystem state:") && l.trim_end().ends_with("clean"))
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

/// Ends the agent with a shutdown (which unmounts its volumes) and waits for it to exit.
async fn shut_down(client: Client, mut agent: Agent) {
    client.shutdown().await.unwrap();
    drop(client);
    assert!(agent.wait_exit().success());
}

#[tokio::test]
async fn a_disk_volume_is_mounted_where_the_box_sees_it() {
    if skip() {
        return;
    }
    let (Some(data), Some(ro)) = (Image::new(), Image::new()) else {
        return;
    };
    let root = TestRoot::new();
    let agent = root.start_agent();
    let stream = tokio::net::UnixStream::connect(&agent.socket)
        .await
        .unwrap();
    let (client, hello) = Client::handshake(stream).await.unwrap();
    assert!(hello.capabilities.iter().any(|c| c == CAPABILITY_MOUNT));

    // Parents first: the read-only volume's directory is made inside the first volume.
    client
        .mount(&[
            data.volume("/data/vol", false),
            ro.volume("/data/vol/ro", true),
        ])
        .await
        .unwrap();
    let out = run(
        &client,
        sh("echo hi > /data/vol/x && cat /data/vol/x && ! touch /data/vol/ro/z 2>/dev/null"),
    )
    .await
    .unwrap();
    assert_eq!(out.out(), "hi\n", "{}", out.err());
    assert!(out.status.success(), "{:?} {}", out.status, out.err());
    // The directories were made in the box's root; the file went to the volume, not there.
    assert!(root.path().join("data/vol").is_dir());
    assert!(!root.path().join("data/vol/x").exists());

    shut_down(client, agent).await;
    assert_eq!(data.read("/x"), "hi\n");
    assert!(data.clean(), "the volume was not unmounted cleanly");
    assert!(ro.read("/z").is_empty());
}

#[tokio::test]
async fn a_symlink_out_of_the_box_lands_inside_it() {
    if skip() {
        return;
    }
    let Some(image) = Image::new() else {
        return;
    };
    let root = TestRoot::new();
    std::os::unix::fs::symlink("/", root.path().join("escape")).unwrap();
    let name = format!("boxlite-volume-escape-{}", std::process::id());
    let host_tmp = Path::new("/tmp").join(&name);
    assert!(!host_tmp.exists());
    let agent = root.start_agent();
    let client = agent.connect().await;

    client
        .mount(&[image.volume(&format!("/escape/tmp/{name}"), false)])
        .await
        .unwrap();
    assert!(root.path().join("tmp").join(&name).is_dir());
    assert!(!host_tmp.exists(), "the agent made {}", host_tmp.display());
    let out = run(&client, sh(&format!("echo esc > /tmp/{name}/y")))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", out.err());
    assert!(!root.path().join("tmp").join(&name).join("y").exists());

    shut_down(client, agent).await;
    assert_eq!(image.read("/y"), "esc\n");
    assert!(!host_tmp.exists());
}

#[tokio::test]
async fn failed_mounts_name_the_volume_and_keep_the_earlier_ones() {
    if skip() {
        return;
    }
    let Some(image) = Image::new() else {
        return;
    };
    let root = TestRoot::new();
    std::fs::write(root.path().join("work/file"), "x").unwrap();
    let agent = root.start_agent();
    let client = agent.connect().await;

    let missing = VolumeMount {
        source: MountSource::Disk {
            device: "/dev/vdzzz".into(),
            fstype: "ext4".into(),
        },
        path: "/missing".into(),
        read_only: false,
    };
    let e = client
        .mount(&[image.volume("/first", false), missing])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Remote { kind: ErrorKind::NotFound, message }
            if message.contains("/missing") && message.contains("/dev/vdzzz")),
        "{e}"
    );
    // The first volume stays mounted.
    let out = run(&client, sh("echo kept > /first/k")).await.unwrap();
    assert!(out.status.success(), "{}", out.err());

    let e = client
        .mount(&[image.volume("/work/file", false)])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Remote { kind: ErrorKind::Invalid, message }
            if message.contains("/work/file") && message.contains("not a directory")),
        "{e}"
    );
    let virtiofs = VolumeMount {
        source: MountSource::Virtiofs {
            tag: "no-such-tag".into(),
        },
        path: "/shared".into(),
        read_only: true,
    };
    let e = client.mount(&[virtiofs]).await.unwrap_err();
    assert!(
        matches!(&e, Error::Remote { message, .. } if message.contains("no-such-tag")),
        "{e}"
    );

    shut_down(client, agent).await;
    assert_eq!(image.read("/k"), "kept\n");
}

/// An agent that is not root says so instead of trying (as root, it is run as `nobody`).
#[tokio::test]
async fn an_unprivileged_agent_answers_unsupported() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = if support::is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            support::AGENT,
        ]);
        Agent::start_with(cmd, root.path())
    } else {
        Agent::start(root.path())
    };
    let client = agent.connect().await;
    let volume = VolumeMount {
        source: MountSource::Virtiofs { tag: "t".into() },
        path: "/data".into(),
        read_only: false,
    };
    let e = client.mount(&[volume]).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::Unsupported), "{e}");
    assert!(e.to_string().contains("root"), "{e}");
    assert!(!root.path().join("data").exists());
}
