//! Executions on a pseudo-terminal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use protocol::{ExecRequest, TtySize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{Agent, read_until, sh};

fn tty(script: &str, rows: u16, cols: u16) -> ExecRequest {
    let mut request = sh(script);
    request.tty = Some(TtySize { rows, cols });
    request
}

#[tokio::test]
async fn size_resize_and_controlling_terminal() {
    let agent = Agent::start(Path::new("/"));
    let client = agent.connect().await;
    let mut exec = client
        .exec(tty(
            "stty size; read line; stty size; echo \"[$line]\"",
            24,
            80,
        ))
        .await
        .unwrap();
    let mut stdout = exec.stdout.take().unwrap();
    let mut stdin = exec.stdin.take().unwrap();
    read_until(&mut stdout, "24 80").await;
    exec.resize(50, 132).await.unwrap();
    // The resize is applied before the next input is read: both go through the same agent
    // task in order.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stdin.write_all(b"hello\n").await.unwrap();
    let seen = read_until(&mut stdout, "[hello]").await;
    assert!(seen.contains("50 132"), "{seen:?}");
    let status = exec.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
    // All output arrives on stdout; stderr is empty.
    let mut err = Vec::new();
    exec.stderr
        .take()
        .unwrap()
        .read_to_end(&mut err)
        .await
        .unwrap();
    assert!(err.is_empty());
}

#[tokio::test]
async fn the_terminal_is_the_controlling_one_and_stderr_is_merged() {
    let agent = Agent::start(Path::new("/"));
    let client = agent.connect().await;
    let script = "test -t 0 && test -t 1 && test -t 2 && echo all-ttys; \
                  echo to-stderr >&2; echo \"$TERM\"; \
                  ps -o tty= -p $$ | grep -q pts && echo controlling; \
                  test \"$(ps -o sid= -p $$)\" -eq $$ && echo session-leader";
    let out = support::run(&client, tty(script, 10, 40)).await.unwrap();
    let text = out.out();
    for needle in [
        "all-ttys",
        "to-stderr",
        "xterm",
        "controlling",
        "session-leader",
    ] {
        assert!(text.contains(needle), "{needle} missing in {text:?}");
    }
    assert!(out.stderr.is_empty());
    assert!(out.status.success());
}

#[tokio::test]
async fn stdin_eof_ends_input_on_a_terminal() {
    let agent = Agent::start(Path::new("/"));
    let client = agent.connect().await;
    let mut exec = client
        .exec(tty("cat; echo cat-ended", 24, 80))
        .await
        .unwrap();
    let mut stdin = exec.stdin.take().unwrap();
    let mut stdout = exec.stdout.take().unwrap();
    stdin.write_all(b"line one\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    read_until(&mut stdout, "cat-ended").await;
    assert!(exec.wait().await.unwrap().success());
}

#[tokio::test]
async fn signals_reach_a_terminal_session() {
    let agent = Agent::start(Path::new("/"));
    let client = agent.connect().await;
    let exec = client.exec(tty("exec sleep 300", 24, 80)).await.unwrap();
    // Signal only once `sleep` runs: a shell that forked it but has not yet exec'd it would
    // swallow SIGINT in its own handler (a race of the shell, not of the agent).
    support::wait_for_program(exec.pid(), "sleep");
    exec.signal(2, true).await.unwrap();
    let status = tokio::time::timeout(support::STEP, exec.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.signal, Some(2), "{status:?}");
}
