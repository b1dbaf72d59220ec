//! Executions through the real agent on a Unix socket: exit statuses, errors, environment,
//! working directory, signals, stdin, timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use protocol::{Error, ErrorKind, ExecRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{Agent, run, sh};

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let agent = Agent::start(std::path::Path::new("/"));
    let client = agent.connect().await;
    let out = run(&client, ExecRequest::new(["true"])).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = run(&client, sh("echo out; echo err >&2; exit 3"))
        .await
        .unwrap();
    assert_eq!(out.status.code, Some(3));
    assert_eq!(out.status.signal, None);
    assert!(!out.status.timed_out);
    assert_eq!(out.out(), "out\n");
    assert_eq!(out.err(), "err\n");
    let out = run(&client, sh("kill -KILL $$")).await.unwrap();
    assert_eq!((out.status.code, out.status.signal), (None, Some(9)));
}

#[tokio::test]
async fn a_missing_command_is_a_clear_not_found() {
    let agent = Agent::start(std::path::Path::new("/"));
    let client = agent.connect().await;
    for argv0 in [
        "no-such-command-anywhere",
        "/no/such/program",
        "./relative-missing",
    ] {
        let start = Instant::now();
        let err = tokio::time::timeout(
            Duration::from_secs(10),
            client.exec(ExecRequest::new([argv0])),
        )
        .await
        .expect("a missing command must fail at once, not hang")
        .unwrap_err();
        match err {
            Error::Remote { kind, message } => {
                assert_eq!(kind, ErrorKind::NotFound, "{argv0}: {message}");
                assert!(message.contains(argv0), "{argv0}: {message}");
            }
            other => panic!("{argv0}: {other}"),
        }
        assert!(start.elapsed() < Duration::from_secs(5));
    }
    let err = client
        .exec(ExecRequest::new(["no-such-command-anywhere"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("PATH="), "{err}");
    // The connection is still fine after the failures.
    assert!(
        run(&client, ExecRequest::new(["true"]))
            .await
            .unwrap()
            .status
            .success()
    );
}

#[tokio::test]
async fn env_is_as_sent_with_a_default_path() {
    let agent = Agent::start(std::path::Path::new("/"));
    let client = agent.connect().await;
    let out = run(&client, sh("echo \"$PATH\"; env | grep -c ^CARGO || true"))
        .await
        .unwrap();
    assert_eq!(
        out.out(),
        format!("{}\n0\n", guest::root::DEFAULT_PATH),
        "no PATH sent: the default; nothing of the agent's own environment leaks"
    );
    let mut request = sh("echo \"$FOO|$PATH\"; pwd");
    request.env = vec![
        ("FOO".into(), "bar baz".into()),
        ("PATH".into(), "/usr/bin:/bin".into()),
    ];
    request.cwd = Some("/tmp".into());
    let out = run(&client, request).await.unwrap();
    assert_eq!(out.out(), "bar baz|/usr/bin:/bin\n/tmp\n");
}

/// An agent that is not root does not chroot: commands come from the host, and the working
/// directory is taken relative to its root directory. (As root, the agent is run as `nobody`.)
#[tokio::test]
async fn without_chroot_cwd_is_relative_to_the_root() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(root.path().join("work")).unwrap();
    let agent = if support::is_root() {
        let mut cmd = std::process::Command::new("setpriv");
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
    let mut request = sh("pwd; id -u");
    request.cwd = Some("/work".into());
    let out = run(&client, request).await.unwrap();
    let work = root.path().canonicalize().unwrap().join("work");
    let uid = if support::is_root() {
        65534
    } else {
        rustix::process::geteuid().as_raw()
    };
    assert_eq!(out.out(), format!("{}\n{uid}\n", work.display()));
    let mut request = sh("pwd");
    request.cwd = Some("/missing".into());
    let err = client.exec(request).await.unwrap_err();
    assert!(
        matches!(&err, Error::Remote { kind: ErrorKind::NotFound, message } if message.contains("/missing")),
        "{err}"
    );
    // Switching users needs root.
    let mut request = sh("true");
    request.user = Some("0".into());
    let err = client.exec(request).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Remote {
                kind: ErrorKind::PermissionDenied,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn stdin_is_streamed_to_eof() {
    let agent = Agent::start(std::path::Path::new("/"));
    let client = agent.connect().await;
    let mut exec = client.exec(ExecRequest::new(["cat"])).await.unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut stdin = exec.stdin.take().unwrap();
    let mut stdout = exec.stdout.take().unwrap();
    let to_send = data.clone();
    let writer = tokio::spawn(async move {
        stdin.write_all(&to_send).await.unwrap();
        stdin.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    tokio::time::timeout(support::STEP, stdout.read_to_end(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert!(
        echoed == data,
        "cat echoed {} bytes of {}",
        echoed.len(),
        data.len()
    );
    assert!(exec.wait().await.unwrap().success());
    // Without any stdin at all, `cat` sees EOF at once.
    let out = run(&client, ExecRequest::new(["cat"])).await.unwrap();
    assert!(out.status.success() && out.stdout.is_empty());
}

#[tokio::test]
async fn signals_reach_the_process_or_its_whole_group() {
    let agent = Agent::start(std::path::Path::new("/"));
    let client = agent.connect().await;

    // To the process only: the leader dies, its background child lives on (and keeps the
    // execution open, holding stdout), until a group signal ends it too.
    let exec = client
        .exec(sh("sleep 300 & echo $!; exec sleep 301"))
        .await
        .unwrap();
    let mut exec = exec;
    let mut stdout = exec.stdout.take().unwrap();
    let line = support::read_until(&mut stdout, "\n").await;
    let child: u32 = line.trim().parse().unwrap();
    exec.signal(15, false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(std::path::Path::new(&format!("/proc/{child}")).exists());
    assert!(
        exec.try_wait().unwrap().is_none(),
        "the child still holds stdout"
    );
    exec.signal(9, true).await.unwrap();
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).await.unwrap();
    let status = tokio::time::timeout(support::STEP, exec.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.signal,
        Some(15),
        "the leader died of the first signal"
    );
    assert!(
        support::gone(child),
        "the group signal killed the background child"
    );

    // To the group while the leader waits for its children.
    let mut exec = client
        .exec(sh("sleep 300 & echo $!; sleep 300 & echo $!; wait"))
        .await
        .unwrap();
    let mut stdout = exec.stdout.take().unwrap();
    let text = support::read_until(&mut stdout, "\n").await;
    let text = if text.lines().count() < 2 {
        text + &support::read_until(&mut stdout, "\n").await
    } else {
        text
    };
    let pids: Vec<u32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    exec.signal(15, true).await.unwrap();
    let status = tokio::time::timeout(support::STEP, exec.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.signal, Some(15));
    for pid in pids {
        assert!(
            support::gone(pid),
            "sleeper {pid} survived the group signal"
        );
    }
}

#[tokio::test]
async fn a_timeout_kills_the_whole_tree() {
    let agent = Agent::start(std::path::Path::new("/"));
    let client = agent.connect().await;
    let mut request = sh("sleep 300 & echo $!; sleep 300 & echo $!; wait");
    request.timeout_ms = Some(500);
    let start = Instant::now();
    let out = run(&client, request).await.unwrap();
    assert!(out.status.timed_out, "{out:?}");
    assert_eq!(out.status.signal, Some(15), "SIGTERM was enough");
    assert!(start.elapsed() < Duration::from_secs(10));
    for line in out.out().lines() {
        let pid: u32 = line.parse().unwrap();
        assert!(support::gone(pid), "sleeper {pid} outlived the timeout");
    }

    // A tree that ignores SIGTERM gets SIGKILL after the grace period.
    let mut request = sh("trap '' TERM; sleep 300 & echo $!; wait");
    request.timeout_ms = Some(300);
    let start = Instant::now();
    let out = run(&client, request).await.unwrap();
    assert!(out.status.timed_out, "{out:?}");
    assert_eq!(out.status.signal, Some(9), "{out:?}");
    assert!(start.elapsed() >= guest::agent::TERM_GRACE);
    let pid: u32 = out.out().trim().parse().unwrap();
    assert!(support::gone(pid));

    // A command that finishes in time is not marked.
    let mut request = sh("exit 0");
    request.timeout_ms = Some(60_000);
    let out = run(&client, request).await.unwrap();
    assert!(out.status.success() && !out.status.timed_out);
}

#[tokio::test]
async fn connections_run_concurrently_and_shutdown_stops_the_agent() {
    let mut agent = Agent::start(std::path::Path::new("/"));
    let a = agent.connect().await;
    let b = agent.connect().await;
    let mut slow = a.exec(sh("read line; echo got $line")).await.unwrap();
    let out = run(&b, sh("echo from b")).await.unwrap();
    assert_eq!(out.out(), "from b\n");
    let mut stdin = slow.stdin.take().unwrap();
    stdin.write_all(b"x\n").await.unwrap();
    let mut stdout = slow.stdout.take().unwrap();
    assert_eq!(support::read_until(&mut stdout, "\n").await, "got x\n");
    assert!(slow.wait().await.unwrap().success());
    let lingering = b.exec(ExecRequest::new(["sleep", "300"])).await.unwrap();
    let pid = lingering.pid();
    b.shutdown().await.unwrap();
    let status = agent.wait_exit();
    assert!(status.success(), "{status}");
    assert!(support::gone(pid), "shutdown ended the running execution");
}
