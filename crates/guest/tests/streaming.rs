//! Bulk output through the agent's flow control, and executions that do not wait for each
//! other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use protocol::ExecRequest;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use support::{Agent, sh};

/// 100 MiB of random data, hashed in the box as it is written and on the host as it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabytes_arrive_intact() {
    const SIZE: usize = 100 * 1024 * 1024;
    let agent = Agent::start(Path::new("/"));
    let client = agent.connect().await;
    let script = format!("head -c {SIZE} /dev/urandom | tee >(sha256sum >&2)");
    let mut exec = client
        .exec(ExecRequest::new(["bash", "-c", &script]))
        .await
        .unwrap();
    drop(exec.stdin.take());
    let mut stdout = exec.stdout.take().unwrap();
    let mut stderr = exec.stderr.take().unwrap();
    let hashing = async {
        let mut hasher = Sha256::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = stdout.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n;
        }
        (total, hex(&hasher.finalize()))
    };
    let mut err = String::new();
    let ((total, ours), _) = tokio::time::timeout(Duration::from_secs(300), async {
        tokio::join!(hashing, stderr.read_to_string(&mut err))
    })
    .await
    .unwrap();
    let status = exec.wait().await.unwrap();
    assert!(status.success(), "{status:?} {err}");
    assert_eq!(total, SIZE);
    let theirs = err.split_whitespace().next().unwrap_or_default();
    assert_eq!(ours, theirs, "the data changed on the way");
    let stats = client.stats();
    assert!(
        stats.peak_stream_buffered <= protocol::INITIAL_WINDOW as usize,
        "{stats:?}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One execution whose output nobody reads blocks on its pipe; another runs to completion
/// meanwhile, and the stalled one finishes once it is read.
#[tokio::test]
async fn a_stalled_reader_stalls_only_its_own_execution() {
    const STALLED: usize = 8 * 1024 * 1024;
    let agent = Agent::start(Path::new("/"));
    let client = agent.connect().await;
    let mut stalled = client
        .exec(sh(&format!("head -c {STALLED} /dev/zero; echo done >&2")))
        .await
        .unwrap();
    drop(stalled.stdin.take());
    // Let it fill its window and pipe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..3 {
        let out = support::run(
            &client,
            sh(&format!("head -c 3000000 /dev/zero | wc -c; echo {i}")),
        )
        .await
        .unwrap();
        assert_eq!(out.out(), format!("3000000\n{i}\n"));
    }
    client.ping().await.unwrap();
    assert!(
        stalled.try_wait().unwrap().is_none(),
        "the unread execution cannot have finished: its output is not read"
    );
    let mut stdout = stalled.stdout.take().unwrap();
    let mut stderr = stalled.stderr.take().unwrap();
    let (mut out, mut err) = (Vec::new(), String::new());
    let (a, b) = tokio::join!(
        stdout.read_to_end(&mut out),
        stderr.read_to_string(&mut err)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(out.len(), STALLED);
    assert!(out.iter().all(|b| *b == 0));
    assert_eq!(err, "done\n");
    assert!(stalled.wait().await.unwrap().success());
}

/// Output the host never reads (its stream handle dropped) does not stall the process.
#[tokio::test]
async fn dropped_outputs_are_discarded() {
    let agent = Agent::start(Path::new("/"));
    let client = agent.connect().await;
    let mut exec = client
        .exec(sh(
            "head -c 5000000 /dev/zero; head -c 5000000 /dev/zero >&2; exit 4",
        ))
        .await
        .unwrap();
    drop(exec.stdin.take());
    drop(exec.stdout.take());
    drop(exec.stderr.take());
    let status = tokio::time::timeout(support::STEP, exec.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code, Some(4));
}
