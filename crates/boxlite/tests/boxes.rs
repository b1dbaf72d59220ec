//! Boxes end to end: real VMs (the xtask kernel and agent under QEMU; TCG on hosts without
//! hardware KVM) driven through the runtime API. Skipped, with the reason, when the guest
//! kernel and initramfs are not given (see `support::guest`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use boxlite::{BoxCommand, BoxOptions, BoxState, Error};
use support::{Fixture, IMAGE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sh(script: &str) -> BoxCommand {
    BoxCommand::new("sh").args(["-c", script])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_exec_and_a_disk_that_persists() {
    let Some(fx) = Fixture::new() else { return };
    let rt = fx.runtime();
    let mut options = BoxOptions::new(IMAGE);
    options.name = Some("life".into());
    options.env = vec![("BOX_VAR".into(), "from-box".into())];
    let bx = rt.create(options).await.unwrap();
    assert_eq!(bx.info().await.unwrap().state, BoxState::Created);
    bx.start().await.unwrap();
    let info = bx.info().await.unwrap();
    assert_eq!(info.state, BoxState::Running);
    assert!(
        info.engine.as_deref().unwrap().starts_with("qemu"),
        "{info:?}"
    );

    // Output, exit code, the image's and the box's environment and working directory.
    let out = bx
        .exec(
            sh("echo $IMAGE_VAR $BOX_VAR $CMD_VAR; pwd; echo oops >&2; exit 3").env("CMD_VAR", "c"),
        )
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from-image from-box c\n/srv\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(out.status.code, Some(3));

    // A command that does not exist: the agent's error, naming it.
    let err = bx.exec(BoxCommand::new("no-such-cmd")).await.unwrap_err();
    assert!(err.to_string().contains("no-such-cmd"), "{err}");

    // stdin streams in, and one exec streams while another runs.
    let mut streaming = bx.exec(BoxCommand::new("cat")).await.unwrap();
    let mut stdin = streaming.stdin.take().unwrap();
    let mut stdout = streaming.stdout.take().unwrap();
    stdin.write_all(b"first\n").await.unwrap();
    let mut buf = [0u8; 6];
    stdout.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"first\n");
    let other = bx
        .exec(sh("seq 1 3"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(other.stdout, b"1\n2\n3\n");
    stdin.write_all(b"second\n").await.unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"second\n");
    assert!(streaming.wait().await.unwrap().success());

    // Files in and out.
    let host = fx.dir.path().join("host-file");
    std::fs::write(&host, b"payload").unwrap();
    bx.copy_in(&host, "/root/").await.unwrap();
    bx.copy_in(&host, "/root/renamed").await.unwrap();
    let out = bx
        .exec(sh("cat /root/host-file /root/renamed"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"payloadpayload");
    let back = fx.dir.path().join("back");
    bx.copy_out("/etc/os-release", &back).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "NAME=\"e2e tools\"\n"
    );

    // A file written before a stop is there after the next start.
    let out = bx
        .exec(sh("echo kept > /root/note; sync"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let metrics = bx.metrics().await.unwrap();
    assert!(metrics.boot_ms.unwrap() > 0.0);
    assert!(metrics.supervisor_rss_kib.unwrap() > 0);
    bx.stop().await.unwrap();
    let info = bx.info().await.unwrap();
    assert_eq!(info.state, BoxState::Stopped, "{info:?}");
    let err = bx.exec(BoxCommand::new("true")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidState { .. }), "{err}");
    bx.start().await.unwrap();
    let out = bx
        .exec(sh("cat /root/note"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"kept\n");
    let metrics = bx.metrics().await.unwrap();
    assert!(metrics.exec_count >= 1, "{metrics:?}");
    bx.stop_with_grace(Duration::from_secs(5)).await.unwrap();
    rt.remove("life", false).await.unwrap();
    assert!(matches!(
        rt.get("life").await.unwrap_err(),
        Error::NoSuchBox(_)
    ));
}
