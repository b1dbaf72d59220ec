//! The host client against the test agent over a real socket pair.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use protocol::{
    CAPABILITY_MOUNT, Error, ErrorKind, ExecRequest, INITIAL_WINDOW, MountSource, TtySize,
    VolumeMount,
};
use support::{pair, pattern, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn req(argv: &[&str]) -> ExecRequest {
    ExecRequest::new(argv.iter().copied())
}

async fn read_all(r: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).await.unwrap();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_returns_output_and_status() {
    let p = pair().await;
    within(10, async {
        let mut run = p
            .client
            .exec(req(&["echo", "hello", "world"]))
            .await
            .unwrap();
        assert_eq!(run.pid(), 100);
        let out = read_all(run.stdout.as_mut().unwrap()).await;
        let err = read_all(run.stderr.as_mut().unwrap()).await;
        assert_eq!(out, b"hello world");
        assert_eq!(err, b"to stderr");
        let status = run.wait().await.unwrap();
        assert!(status.success(), "{status:?}");
        let run = p.client.exec(req(&["exit", "3"])).await.unwrap();
        assert_eq!(run.wait().await.unwrap().code, Some(3));
        assert_eq!(run.try_wait().unwrap().unwrap().code, Some(3));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_complete_even_when_read_after_wait() {
    let p = pair().await;
    within(10, async {
        let mut run = p.client.exec(req(&["produce", "100000"])).await.unwrap();
        run.wait().await.unwrap();
        let out = read_all(run.stdout.as_mut().unwrap()).await;
        assert_eq!(out, pattern(0, 100_000));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_fails_with_not_found() {
    let p = pair().await;
    let e = within(10, p.client.exec(req(&["no-such-tool", "-x"])))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::NotFound), "{e}");
    assert!(
        e.to_string().contains("command not found: no-such-tool"),
        "{e}"
    );
    // The connection is fine afterwards.
    within(5, p.client.ping()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_fail_locally_with_the_field_named() {
    let p = pair().await;
    let e = p.client.exec(ExecRequest::default()).await.unwrap_err();
    assert!(e.to_string().contains("argv is empty"), "{e}");
    let e = p
        .client
        .exec(ExecRequest {
            cwd: Some("relative/dir".into()),
            ..req(&["echo"])
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cwd"), "{e}");
    let e = p
        .client
        .download("etc", tokio::io::sink())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("absolute path"), "{e}");
    let run = p.client.exec(req(&["sleep"])).await.unwrap();
    assert!(run.signal(0, false).await.is_err());
    assert!(run.resize(0, 10).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_round_trips_through_cat() {
    let p = pair().await;
    within(30, async {
        let mut run = p.client.exec(req(&["cat"])).await.unwrap();
        let mut stdin = run.stdin.take().unwrap();
        let mut stdout = run.stdout.take().unwrap();
        let data = pattern(7, 3_000_000);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            stdin.write_all(&sent).await.unwrap();
            stdin.shutdown().await.unwrap();
        });
        let out = read_all(&mut stdout).await;
        writer.await.unwrap();
        assert_eq!(out.len(), data.len());
        assert!(out == data);
        assert!(run.wait().await.unwrap().success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_channels_keep_their_bytes_apart() {
    let p = pair().await;
    let client = std::sync::Arc::new(p.client);
    within(60, async {
        let mut tasks = Vec::new();
        for i in 0..40u64 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut run = client.exec(req(&["cat"])).await.unwrap();
                let mut stdin = run.stdin.take().unwrap();
                let mut stdout = run.stdout.take().unwrap();
                let data = pattern(i * 1000, 50_000 + i as usize * 3_000);
                let sent = data.clone();
                let w = tokio::spawn(async move {
                    for chunk in sent.chunks(7_001) {
                        stdin.write_all(chunk).await.unwrap();
                    }
                });
                let out = read_all(&mut stdout).await;
                w.await.unwrap();
                assert!(out == data, "channel {i} got other bytes");
                assert!(run.wait().await.unwrap().success());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await;
    let stats = client.stats();
    assert_eq!(stats.channels, 0, "{stats:?}");
    assert_eq!(stats.streams, 0, "{stats:?}");
    assert_eq!(stats.buffered_in, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_stalls_only_its_own_stream() {
    let p = pair().await;
    within(120, async {
        // Nobody reads this execution's stdout.
        let stalled = p.client.exec(req(&["produce", "10000000"])).await.unwrap();
        let mut busy = p.client.exec(req(&["produce", "50000000"])).await.unwrap();
        let mut stdout = busy.stdout.take().unwrap();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let mut total = 0u64;
            let mut ok = true;
            loop {
                let n = stdout.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                ok &= buf[..n] == pattern(total, n)[..];
                total += n as u64;
            }
            (total, ok)
        });
        let mut pings = 0;
        while !reader.is_finished() {
            let rtt = p.client.ping().await.unwrap();
            assert!(rtt < Duration::from_secs(2), "ping took {rtt:?}");
            pings += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (total, ok) = reader.await.unwrap();
        assert_eq!(total, 50_000_000);
        assert!(ok, "the busy stream's bytes were corrupted");
        assert!(pings > 0);
        assert!(busy.wait().await.unwrap().success());
        // The stalled stream holds exactly one window and has not ended.
        let stats = p.client.stats();
        assert_eq!(stats.buffered_in, INITIAL_WINDOW as usize, "{stats:?}");
        assert!(
            stats.peak_stream_buffered <= INITIAL_WINDOW as usize,
            "{stats:?}"
        );
        assert_eq!(stalled.try_wait().unwrap(), None);
        // Another execution still runs normally meanwhile.
        let mut other = p
            .client
            .exec(req(&["echo", "still", "here"]))
            .await
            .unwrap();
        assert_eq!(
            read_all(other.stdout.as_mut().unwrap()).await,
            b"still here"
        );
        // Reading it now lets it finish, with every byte.
        let mut stalled = stalled;
        let out = read_all(stalled.stdout.as_mut().unwrap()).await;
        assert_eq!(out.len(), 10_000_000);
        assert!(out == pattern(0, 10_000_000));
        assert!(stalled.wait().await.unwrap().success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_buffers_at_most_a_window_of_unread_stdin() {
    let p = pair().await;
    within(30, async {
        let mut run = p.client.exec(req(&["nostdin"])).await.unwrap();
        let mut stdin = run.stdin.take().unwrap();
        let chunk = vec![1u8; 4096];
        let mut written = 0usize;
        // The writes stop once the window is used up.
        while tokio::time::timeout(Duration::from_millis(300), stdin.write_all(&chunk))
            .await
            .is_ok()
        {
            written += chunk.len();
            assert!(written <= 2 * INITIAL_WINDOW as usize, "no back-pressure");
        }
        assert!(written <= INITIAL_WINDOW as usize, "{written}");
        assert!(
            written >= INITIAL_WINDOW as usize - chunk.len(),
            "{written}"
        );
        let mut stats = p.client.exec(req(&["stats"])).await.unwrap();
        let line = String::from_utf8(read_all(stats.stdout.as_mut().unwrap()).await).unwrap();
        let (peak, buffered) = line.split_once(' ').unwrap();
        assert!(peak.parse::<u32>().unwrap() <= INITIAL_WINDOW, "{line}");
        assert!(buffered.parse::<u32>().unwrap() <= INITIAL_WINDOW, "{line}");
        run.signal(15, false).await.unwrap();
        assert!(run.wait().await.unwrap().success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_output_does_not_stall_the_process() {
    let p = pair().await;
    within(30, async {
        let mut run = p.client.exec(req(&["produce", "5000000"])).await.unwrap();
        drop(run.stdout.take());
        assert!(run.wait().await.unwrap().success());
        assert_eq!(p.client.stats().buffered_in, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_resizes_and_closed_stdin() {
    let p = pair().await;
    within(10, async {
        let mut run = p
            .client
            .exec(ExecRequest {
                tty: Some(TtySize { rows: 24, cols: 80 }),
                ..req(&["sleep"])
            })
            .await
            .unwrap();
        run.resize(50, 132).await.unwrap();
        let mut stdout = run.stdout.take().unwrap();
        let mut line = [0u8; 7];
        stdout.read_exact(&mut line).await.unwrap();
        assert_eq!(&line, b"50x132\n");
        run.signal(15, true).await.unwrap();
        let status = run.wait().await.unwrap();
        assert_eq!(status.signal, Some(15));
        assert!(!status.success());
        // After the exit, stdin refuses writes instead of blocking on a window.
        let mut stdin = run.stdin.take().unwrap();
        let e = stdin.write_all(b"late").await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        // Signalling an ended process is not an error.
        run.signal(9, false).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_fails_instead_of_hanging() {
    let p = pair().await;
    let e = within(10, p.client.exec(req(&["drop"]))).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::Io), "{e}");
    assert!(e.to_string().contains("without answering"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_download_round_trip() {
    let p = pair().await;
    within(30, async {
        let data = pattern(3, 3_000_000);
        p.client.upload("/data", &data[..]).await.unwrap();
        let mut back = Vec::new();
        p.client.download("/data", &mut back).await.unwrap();
        assert!(back == data);
        // Empty uploads work too.
        p.client.upload("/empty", &b""[..]).await.unwrap();
        let mut back = Vec::new();
        p.client.download("/empty", &mut back).await.unwrap();
        assert!(back.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_errors_come_back_named() {
    let p = pair().await;
    within(30, async {
        let e = p
            .client
            .download("/nope", tokio::io::sink())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), Some(ErrorKind::NotFound), "{e}");
        assert!(e.to_string().contains("/nope"), "{e}");
        let e = p
            .client
            .download("/fail-midway", tokio::io::sink())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), Some(ErrorKind::Io), "{e}");
        assert!(e.to_string().contains("disk error"), "{e}");
        // The agent refuses before reading: the upload returns its error, not a hang on
        // the window.
        let big = pattern(0, 5_000_000);
        let e = p.client.upload("/reject", &big[..]).await.unwrap_err();
        assert_eq!(e.kind(), Some(ErrorKind::PermissionDenied), "{e}");
        p.client.ping().await.unwrap();
    })
    .await;
}

/// A tar stream that fails after some bytes.
struct FailingReader(usize);

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("the disk went away")));
        }
        let n = self.0.min(buf.remaining()).min(1000);
        buf.put_slice(&vec![7u8; n]);
        self.0 -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_upload_source_cancels_instead_of_completing() {
    let p = pair().await;
    let e = within(10, p.client.upload("/partial", FailingReader(100_000)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("the disk went away"), "{e}");
    assert!(e.to_string().contains("/partial"), "{e}");
    // The agent saw an error on the stream, never a clean EOF.
    within(10, async {
        loop {
            let failed = p.files.lock().unwrap().get("/partial.failed").cloned();
            if let Some(why) = failed {
                let why = String::from_utf8(why).unwrap();
                assert!(why.contains("cancelled"), "{why}");
                break;
            }
            assert!(!p.files.lock().unwrap().contains_key("/partial"));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A sink that fails after some bytes.
struct FailingWriter(usize);

impl tokio::io::AsyncWrite for FailingWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("no space left")));
        }
        let n = self.0.min(buf.len());
        self.0 -= n;
        std::task::Poll::Ready(Ok(n))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_download_sink_cancels_the_guest_side() {
    let p = pair().await;
    p.client
        .upload("/big", &pattern(0, 4_000_000)[..])
        .await
        .unwrap();
    let e = within(10, p.client.download("/big", FailingWriter(10_000)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no space left"), "{e}");
    assert!(e.to_string().contains("/big"), "{e}");
    // The agent's writer failed instead of waiting for window forever.
    within(10, async {
        while !p.files.lock().unwrap().contains_key("/big.cancelled") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    p.client.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_fails_everything_pending() {
    let p = pair().await;
    let mut run = p.client.exec(req(&["hang"])).await.unwrap();
    let mut stdout = run.stdout.take().unwrap();
    let mut stdin = run.stdin.take().unwrap();
    let reading = tokio::spawn(async move {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).await
    });
    // The connection goes away mid-execution.
    p.cable.abort();
    let e = within(10, run.wait()).await.unwrap_err();
    assert!(e.to_string().contains("agent connection closed"), "{e}");
    let e = within(10, reading).await.unwrap().unwrap_err();
    assert!(e.to_string().contains("agent connection closed"), "{e}");
    let e = within(10, p.client.ping()).await.unwrap_err();
    assert!(matches!(e, Error::Closed { .. }), "{e}");
    let e = within(10, p.client.exec(req(&["echo"]))).await.unwrap_err();
    assert!(matches!(e, Error::Closed { .. }), "{e}");
    let e = within(10, stdin.write_all(b"x")).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionAborted, "{e}");
    assert!(p.client.closed_error().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_when_the_connection_drops_fail_too() {
    let p = pair().await;
    let client = std::sync::Arc::new(p.client);
    let mut running = Vec::new();
    for _ in 0..10 {
        running.push(client.exec(req(&["hang"])).await.unwrap());
    }
    let waits: Vec<_> = running
        .into_iter()
        .map(|run| tokio::spawn(async move { run.wait().await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    p.cable.abort();
    for w in waits {
        let e = within(10, w).await.unwrap().unwrap_err();
        assert!(matches!(e, Error::Closed { .. }), "{e}");
        assert!(
            e.to_string().starts_with("agent connection closed: "),
            "{e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_dies_fails_its_requests() {
    let p = pair().await;
    let run = p.client.exec(req(&["hang"])).await.unwrap();
    let run2 = p.client.exec(req(&["hang"])).await.unwrap();
    p.agent.abort();
    // Its tasks drop their replies (answering an error) or the connection closes: either
    // way nothing hangs.
    within(10, run.wait()).await.unwrap_err();
    within(10, run2.wait()).await.unwrap_err();
    within(10, p.client.ping()).await.unwrap_err();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_acknowledged() {
    let p = pair().await;
    within(10, p.client.shutdown()).await.unwrap();
    within(10, p.agent).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_exec_call_cancels_it() {
    let p = pair().await;
    // A call given up before the answer: the agent gets `cancel`, and the client forgets
    // the channel.
    let r = tokio::time::timeout(
        Duration::from_millis(50),
        p.client.exec(req(&["slowstart"])),
    )
    .await;
    assert!(r.is_err(), "the agent answered too early for this test");
    within(10, async {
        while !p.files.lock().unwrap().contains_key("cancelled:1") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        while p.client.stats().channels != 0 || p.client.stats().streams != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    p.client.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_a_blocked_execution_never_stall_the_connection() {
    let p = pair().await;
    within(30, async {
        let mut run = p.client.exec(req(&["flood"])).await.unwrap();
        // The agent's task is stuck writing stdout; the host piles up events for it.
        for i in 1..=500u16 {
            run.resize(i, 80).await.unwrap();
        }
        run.signal(2, false).await.unwrap();
        // The connection still reads: pings answer, other executions run.
        p.client.ping().await.unwrap();
        let mut other = p.client.exec(req(&["echo", "ok"])).await.unwrap();
        assert_eq!(read_all(other.stdout.as_mut().unwrap()).await, b"ok");
        let out = read_all(run.stdout.as_mut().unwrap()).await;
        assert!(out[..1_000_000] == pattern(0, 1_000_000));
        // Resizes were coalesced to the latest.
        assert_eq!(&out[1_000_000..], b"500x80");
        assert!(run.wait().await.unwrap().success());
    })
    .await;
}

fn volume(path: &str, source: MountSource) -> VolumeMount {
    VolumeMount {
        source,
        path: path.into(),
        read_only: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_reaches_the_agent_and_done_comes_back() {
    let (host, guest) = tokio::io::duplex(64 * 1024);
    let files = support::Files::default();
    let agent = tokio::spawn(support::agent(guest, files.clone()));
    let (client, hello) = within(10, protocol::client::Client::handshake(host))
        .await
        .unwrap();
    assert!(hello.capabilities.iter().any(|c| c == CAPABILITY_MOUNT));
    let volumes = [
        volume(
            "/src",
            MountSource::Virtiofs {
                tag: "boxlite-vol-0".into(),
            },
        ),
        volume(
            "/src/db",
            MountSource::Disk {
                device: "/dev/vdc".into(),
                fstype: "ext4".into(),
            },
        ),
    ];
    within(10, client.mount(&volumes)).await.unwrap();
    {
        let files = files.lock().unwrap();
        assert_eq!(files["mounted:/src"], b"virtiofs:boxlite-vol-0");
        assert_eq!(files["mounted:/src/db"], b"ext4:/dev/vdc");
    }
    // No volumes is a valid (empty) request too.
    within(10, client.mount(&[])).await.unwrap();
    assert_eq!(client.stats().channels, 0);
    within(10, client.shutdown()).await.unwrap();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mount_returns_the_agents_error() {
    let p = pair().await;
    let volumes = [
        volume("/ok", MountSource::Virtiofs { tag: "t0".into() }),
        volume(
            "/fail",
            MountSource::Disk {
                device: "/dev/vdd".into(),
                fstype: "ext4".into(),
            },
        ),
        volume("/never", MountSource::Virtiofs { tag: "t1".into() }),
    ];
    let e = within(10, p.client.mount(&volumes)).await.unwrap_err();
    assert!(
        matches!(&e, Error::Remote { kind: ErrorKind::NotFound, message }
            if message.contains("/fail")),
        "{e}"
    );
    {
        let files = p.files.lock().unwrap();
        assert!(files.contains_key("mounted:/ok"));
        assert!(!files.contains_key("mounted:/never"));
    }
    // The connection is fine afterwards.
    within(5, p.client.ping()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_mounts_fail_locally_and_a_dropped_mount_cancels() {
    let p = pair().await;
    let e = p
        .client
        .mount(&[volume(
            "relative",
            MountSource::Virtiofs { tag: "t".into() },
        )])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("volumes[0].path"), "{e}");
    assert!(p.files.lock().unwrap().is_empty());
    // A mount the agent never answers: giving up on it frees its channel.
    let hang = [volume("/hang", MountSource::Virtiofs { tag: "t".into() })];
    let gave_up = tokio::time::timeout(Duration::from_millis(200), p.client.mount(&hang)).await;
    assert!(gave_up.is_err());
    within(10, async {
        while p.client.stats().channels != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    within(5, p.client.ping()).await.unwrap();
}
