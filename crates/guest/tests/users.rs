//! Chrooted executions as users of the box's own /etc/passwd and /etc/group (root only).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use protocol::{Error, ErrorKind};

use support::{TestRoot, run, sh};

fn skip() -> bool {
    if !support::is_root() {
        eprintln!("skipped: chroot and user switching need root");
        return true;
    }
    false
}

#[tokio::test]
async fn users_groups_home_and_cwd_come_from_the_box() {
    if skip() {
        return;
    }
    let root = TestRoot::new();
    let agent = root.start_agent();
    let client = agent.connect().await;
    let script = "id -u; id -g; id -G; echo \"$HOME\"; pwd";

    let mut request = sh(script);
    request.user = Some("tester".into());
    request.cwd = Some("/work".into());
    let out = run(&client, request).await.unwrap();
    assert_eq!(
        out.out(),
        "4321\n4321\n4321 5555 6666\n/home/tester\n/work\n",
        "{}",
        out.err()
    );

    let mut request = sh(script);
    request.user = Some("4321:5555".into());
    let out = run(&client, request).await.unwrap();
    assert_eq!(
        out.out(),
        "4321\n5555\n5555 6666\n/home/tester\n/\n",
        "{}",
        out.err()
    );

    let mut request = sh(script);
    request.user = Some("tester:more".into());
    let out = run(&client, request).await.unwrap();
    assert_eq!(
        out.out(),
        "4321\n6666\n6666 5555\n/home/tester\n/\n",
        "{}",
        out.err()
    );

    // A uid without an entry runs with gid 0 and no home from the box.
    let mut request = sh("id -u; id -g; id -G; echo \"[$HOME]\"");
    request.user = Some("777".into());
    let out = run(&client, request).await.unwrap();
    assert_eq!(out.out(), "777\n0\n0\n[]\n", "{}", out.err());

    // Default: root, with root's home; HOME sent by the host wins.
    let out = run(&client, sh(script)).await.unwrap();
    assert_eq!(out.out(), "0\n0\n0\n/root\n/\n", "{}", out.err());
    let mut request = sh("echo $HOME");
    request.env = vec![("HOME".into(), "/elsewhere".into())];
    let out = run(&client, request).await.unwrap();
    assert_eq!(out.out(), "/elsewhere\n");

    // The user's files are really theirs.
    let mut request = sh("touch /work/owned && stat -c '%u:%g' /work/owned");
    request.user = Some("tester".into());
    let out = run(&client, request).await.unwrap();
    assert_eq!(out.out(), "4321:4321\n", "{}", out.err());
    let meta = std::fs::metadata(root.path().join("work/owned")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 4321);
}

#[tokio::test]
async fn unknown_users_and_groups_are_not_found() {
    if skip() {
        return;
    }
    let root = TestRoot::new();
    let agent = root.start_agent();
    let client = agent.connect().await;
    for (user, needle) in [("mallory", "/etc/passwd"), ("tester:nogroup", "/etc/group")] {
        let mut request = sh("true");
        request.user = Some(user.into());
        match client.exec(request).await.unwrap_err() {
            Error::Remote { kind, message } => {
                assert_eq!(kind, ErrorKind::NotFound, "{user}: {message}");
                assert!(message.contains(needle), "{user}: {message}");
            }
            other => panic!("{user}: {other}"),
        }
    }
}

#[tokio::test]
async fn the_chroot_confines_paths_and_commands() {
    if skip() {
        return;
    }
    let root = TestRoot::new();
    std::fs::write(root.path().join("work/marker"), "inside\n").unwrap();
    let agent = root.start_agent();
    let client = agent.connect().await;
    let out = run(
        &client,
        sh("cat /work/marker; ls /; cat /etc/passwd | head -1"),
    )
    .await
    .unwrap();
    let text = out.out();
    assert!(text.starts_with("inside\n"), "{text}");
    assert!(
        text.contains("work") && !text.contains("boot"),
        "the box's / is the root: {text}"
    );
    assert!(text.contains("root:x:0:0:root:/root:/bin/sh"), "{text}");
    // A command missing from the box is not found even if the host has it elsewhere.
    let mut request = sh("true");
    request.argv = vec!["agent-only-tool".into()];
    let err = client.exec(request).await.unwrap_err();
    assert!(err.to_string().contains("in the box"), "{err}");
}
