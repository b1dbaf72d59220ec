//! Uploads and downloads of tar streams through the agent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use protocol::{Error, ErrorKind};

use support::Agent;

/// A tar archive of `dir`'s contents, made by the system's tar (a reference implementation).
fn system_tar(dir: &Path) -> Vec<u8> {
    let out = std::process::Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn fixture(dir: &Path) {
    std::fs::create_dir_all(dir.join("tree/private")).unwrap();
    std::fs::write(dir.join("tree/readme.txt"), "read me\n").unwrap();
    std::fs::write(dir.join("tree/tool"), "#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(dir.join("tree/tool"), PermissionsExt::from_mode(0o4755)).unwrap();
    std::fs::write(dir.join("tree/private/key"), vec![42u8; 70_000]).unwrap();
    std::fs::set_permissions(
        dir.join("tree/private/key"),
        PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(dir.join("tree/private"), PermissionsExt::from_mode(0o750)).unwrap();
    symlink("readme.txt", dir.join("tree/link")).unwrap();
    if support::is_root() {
        std::os::unix::fs::chown(dir.join("tree/readme.txt"), Some(1234), Some(5678)).unwrap();
    }
}

#[tokio::test]
async fn upload_then_download_keeps_contents_modes_and_owners() {
    let src = tempfile::tempdir().unwrap();
    fixture(src.path());
    let root = tempfile::tempdir().unwrap();
    let agent = Agent::start(root.path());
    let client = agent.connect().await;

    client
        .upload("/srv/app", system_tar(src.path()).as_slice())
        .await
        .unwrap();
    let up = root.path().join("srv/app/tree");
    assert_eq!(std::fs::read(up.join("readme.txt")).unwrap(), b"read me\n");
    assert_eq!(
        std::fs::read(up.join("private/key")).unwrap(),
        vec![42u8; 70_000]
    );
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&up.join("tool")), 0o4755);
    assert_eq!(mode(&up.join("private")), 0o750);
    assert_eq!(mode(&up.join("private/key")), 0o600);
    assert_eq!(
        std::fs::read_link(up.join("link")).unwrap(),
        Path::new("readme.txt")
    );
    if support::is_root() {
        let meta = std::fs::metadata(up.join("readme.txt")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    }

    let mut archive = Vec::new();
    client
        .download("/srv/app/tree", &mut archive)
        .await
        .unwrap();
    let back = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(back.path())
        .args(["-xpf", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&archive)?;
            child.wait()
        })
        .unwrap();
    assert!(status.success());
    let tree = back.path().join("tree");
    assert_eq!(
        std::fs::read(tree.join("readme.txt")).unwrap(),
        b"read me\n"
    );
    assert_eq!(mode(&tree.join("tool")), 0o4755);
    assert_eq!(mode(&tree.join("private")), 0o750);
    assert_eq!(mode(&tree.join("private/key")), 0o600);
    assert_eq!(
        std::fs::read(tree.join("private/key")).unwrap(),
        vec![42u8; 70_000]
    );
    assert_eq!(
        std::fs::read_link(tree.join("link")).unwrap(),
        Path::new("readme.txt")
    );
    if support::is_root() {
        let meta = std::fs::metadata(tree.join("readme.txt")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    }

    // A single file downloads as one entry named after it.
    let mut archive = Vec::new();
    client
        .download("/srv/app/tree/readme.txt", &mut archive)
        .await
        .unwrap();
    let mut ar = tar::Archive::new(archive.as_slice());
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["readme.txt"]);
}

#[tokio::test]
async fn bad_transfers_fail_with_reasons() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("dest")).unwrap();
    let agent = Agent::start(root.path());
    let client = agent.connect().await;

    let mut evil = tar::Header::new_gnu();
    evil.as_old_mut().name[..9].copy_from_slice(b"../escape");
    evil.set_size(1);
    evil.set_mode(0o644);
    evil.set_entry_type(tar::EntryType::Regular);
    evil.set_cksum();
    let mut archive = evil.as_bytes().to_vec();
    archive.extend_from_slice(&[b'x'; 512]);
    archive.extend_from_slice(&[0; 1024]);
    match client
        .upload("/dest", archive.as_slice())
        .await
        .unwrap_err()
    {
        Error::Remote { kind, message } => {
            assert_eq!(kind, ErrorKind::Invalid, "{message}");
            assert!(message.contains("../escape"), "{message}");
        }
        other => panic!("{other}"),
    }
    assert!(!root.path().join("escape").exists());

    match client
        .upload("/dest", &b"this is not a tar archive at all"[..])
        .await
    {
        Err(Error::Remote { kind, .. }) => assert_eq!(kind, ErrorKind::Invalid),
        other => panic!("{other:?}"),
    }
    match client.download("/no/such/path", Vec::new()).await {
        Err(Error::Remote { kind, message }) => {
            assert_eq!(kind, ErrorKind::NotFound, "{message}");
            assert!(message.contains("/no/such/path"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The connection still works.
    client.ping().await.unwrap();
}

#[tokio::test]
async fn large_transfers_stream_both_ways() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(src.path().join("big.bin"), &data).unwrap();
    let agent = Agent::start(root.path());
    let client = agent.connect().await;
    client
        .upload("/data", system_tar(src.path()).as_slice())
        .await
        .unwrap();
    assert!(std::fs::read(root.path().join("data/big.bin")).unwrap() == data);
    let mut archive = Vec::new();
    client
        .download("/data/big.bin", &mut archive)
        .await
        .unwrap();
    let mut ar = tar::Archive::new(archive.as_slice());
    let mut entry = ar.entries().unwrap().next().unwrap().unwrap();
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut back).unwrap();
    assert!(back == data);
}
