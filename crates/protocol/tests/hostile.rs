//! Each end against a misbehaving peer played in raw frames over a real socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use protocol::client::Client;
use protocol::frame::{Frame, Stream};
use protocol::server::{Connection, Request};
use protocol::{Error, ExecRequest, Hello, MAX_DATA_CHUNK};
use serde_json::json;
use support::{Raw, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const HELLO: &str = r#"{"type":"hello","agent_version":"raw","protocol_version":[1,3],"capabilities":["x"],"boot_time_ns":9}"#;

/// A client connected to a raw guest that has said hello.
async fn client_and_raw_guest() -> (Client, Raw) {
    let (host, guest) = UnixStream::pair().unwrap();
    let mut raw = Raw::new(guest);
    raw.send_json(0, HELLO).await;
    let (client, hello) = within(5, Client::handshake(host)).await.unwrap();
    assert_eq!(hello.protocol_version, (1, 3));
    assert_eq!(hello.capabilities, ["x"]);
    (client, raw)
}

/// Answers the raw guest's next request on a fresh channel with `started`; returns the channel.
async fn start_next(raw: &mut Raw) -> u32 {
    let (channel, msg) = raw.recv_control().await.unwrap();
    assert_eq!(msg["type"], "exec");
    raw.send_json(channel, r#"{"type":"started","pid":5}"#)
        .await;
    channel
}

#[tokio::test]
async fn another_major_version_is_refused_with_the_fix() {
    let (host, guest) = UnixStream::pair().unwrap();
    let mut raw = Raw::new(guest);
    raw.send_json(
        0,
        r#"{"type":"hello","agent_version":"9","protocol_version":[2,0],"boot_time_ns":1}"#,
    )
    .await;
    let e = within(5, Client::handshake(host)).await.unwrap_err();
    assert!(matches!(e, Error::Version { .. }), "{e}");
    assert!(e.to_string().contains("agent speaks protocol 2.0"), "{e}");
    assert!(e.to_string().contains("same release"), "{e}");
}

#[tokio::test]
async fn the_first_message_must_be_hello() {
    let (host, guest) = UnixStream::pair().unwrap();
    let mut raw = Raw::new(guest);
    raw.send_json(0, r#"{"type":"pong","nonce":1}"#).await;
    let e = within(5, Client::handshake(host)).await.unwrap_err();
    assert!(matches!(e, Error::Handshake(_)), "{e}");
    assert!(e.to_string().contains("pong"), "{e}");

    let (host, guest) = UnixStream::pair().unwrap();
    drop(guest);
    let e = within(5, Client::handshake(host)).await.unwrap_err();
    assert!(e.to_string().contains("closed the connection"), "{e}");

    let (host, guest) = UnixStream::pair().unwrap();
    let mut raw = Raw::new(guest);
    raw.io.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let e = within(5, Client::handshake(host)).await.unwrap_err();
    assert!(e.to_string().contains("framing error"), "{e}");
}

#[tokio::test]
async fn a_guest_exceeding_its_window_is_cut_off() {
    let (client, mut raw) = client_and_raw_guest().await;
    let exec = tokio::spawn(async move {
        let r = client.exec(ExecRequest::new(["x"])).await;
        (client, r)
    });
    let channel = start_next(&mut raw).await;
    let (client, run) = exec.await.unwrap();
    let mut run = run.unwrap();
    let chunk = vec![0u8; MAX_DATA_CHUNK];
    for _ in 0..9 {
        raw.send(Frame::Data {
            channel,
            stream: Stream::Stdout,
            bytes: chunk.clone().into(),
        })
        .await;
    }
    let e = within(5, run.wait()).await.unwrap_err();
    assert!(e.to_string().contains("flow control violated"), "{e}");
    assert!(e.to_string().contains("stdout of channel 1"), "{e}");
    // What was received within the window is still readable, then the error.
    let mut out = Vec::new();
    let e = run
        .stdout
        .as_mut()
        .unwrap()
        .read_to_end(&mut out)
        .await
        .unwrap_err();
    assert_eq!(out.len(), protocol::INITIAL_WINDOW as usize);
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionAborted);
    assert!(client.stats().peak_stream_buffered <= protocol::INITIAL_WINDOW as usize);
    // The client closed its end.
    assert_eq!(raw.recv().await, None);
}

#[tokio::test]
async fn garbage_from_the_guest_fails_pending_calls() {
    let (client, mut raw) = client_and_raw_guest().await;
    let ping = tokio::spawn(async move { client.ping().await });
    let (_, msg) = raw.recv_control().await.unwrap();
    assert_eq!(msg["type"], "ping");
    // A length far beyond the limit: rejected from the header alone.
    raw.io
        .write_all(&[0xff, 0xff, 0xff, 0xff, 1])
        .await
        .unwrap();
    let e = within(5, ping).await.unwrap().unwrap_err();
    assert!(
        e.to_string()
            .contains("agent connection closed: framing error"),
        "{e}"
    );
}

#[tokio::test]
async fn a_bad_message_ends_only_its_channel() {
    let (client, mut raw) = client_and_raw_guest().await;
    let client = std::sync::Arc::new(client);
    let c = client.clone();
    let exec = tokio::spawn(async move { c.exec(ExecRequest::new(["x"])).await });
    let (channel, _) = raw.recv_control().await.unwrap();
    raw.send_json(channel, r#"{"type":"started","pid":"not a number"}"#)
        .await;
    let e = within(5, exec).await.unwrap().unwrap_err();
    assert!(
        e.to_string().contains("invalid message on channel 1"),
        "{e}"
    );
    // Frames for channels that do not exist are dropped; the connection goes on.
    raw.send(Frame::Data {
        channel: 77,
        stream: Stream::Stdout,
        bytes: vec![1; 10].into(),
    })
    .await;
    raw.send(Frame::Window {
        channel: 78,
        stream: Stream::Stdin,
        credit: 5,
    })
    .await;
    raw.send(Frame::Eof {
        channel: 79,
        stream: Stream::Stderr,
    })
    .await;
    raw.send_json(80, r#"{"type":"exit","code":0,"timed_out":false}"#)
        .await;
    let c = client.clone();
    let ping = tokio::spawn(async move { c.ping().await });
    let (zero, msg) = raw.recv_control().await.unwrap();
    assert_eq!((zero, msg["type"].as_str()), (0, Some("ping")));
    let nonce = msg["nonce"].as_u64().unwrap();
    raw.send_json(0, &json!({"type": "pong", "nonce": nonce}).to_string())
        .await;
    within(5, ping).await.unwrap().unwrap();
    assert_eq!(client.stats().buffered_in, 0);
}

/// A server connection and a raw host that has read its hello.
async fn server_and_raw_host() -> (Connection, Raw) {
    let (host, guest) = UnixStream::pair().unwrap();
    let conn = Connection::start(guest, Hello::new("agent", 7))
        .await
        .unwrap();
    let mut raw = Raw::new(host);
    let (channel, hello) = raw.recv_control().await.unwrap();
    assert_eq!(channel, 0);
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["protocol_version"], json!([1, 1]));
    (conn, raw)
}

async fn expect_error(raw: &mut Raw, channel: u32, needle: &str) {
    let (c, msg) = raw.recv_control().await.unwrap();
    assert_eq!(c, channel, "{msg}");
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["kind"], "invalid", "{msg}");
    let text = msg["message"].as_str().unwrap();
    assert!(text.contains(needle), "{text}");
}

#[tokio::test]
async fn the_server_rejects_bad_requests_per_channel() {
    let (mut conn, mut raw) = server_and_raw_host().await;
    raw.send_json(5, "{not json").await;
    expect_error(&mut raw, 5, "key must be a string").await;
    raw.send_json(6, r#"{"type":"exec","argv":[]}"#).await;
    expect_error(&mut raw, 6, "argv is empty").await;
    raw.send_json(7, r#"{"type":"format_disk"}"#).await;
    expect_error(&mut raw, 7, "format_disk").await;
    raw.send_json(8, r#"{"type":"ping","nonce":1}"#).await;
    expect_error(&mut raw, 8, "belongs on channel 0").await;
    raw.send_json(0, r#"{"type":"upload","path":"/x"}"#).await;
    expect_error(&mut raw, 0, "needs a channel other than 0").await;
    // Signals for nothing are ignored (they race with exits); pings are answered.
    raw.send_json(9, r#"{"type":"signal","signal":9,"group":true}"#)
        .await;
    raw.send_json(0, r#"{"type":"ping","nonce":77}"#).await;
    let (c, msg) = raw.recv_control().await.unwrap();
    assert_eq!((c, msg), (0, json!({"type": "pong", "nonce": 77})));
    // None of that reached the agent.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), conn.next_request())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_channel_in_use_cannot_be_reused() {
    let (mut conn, mut raw) = server_and_raw_host().await;
    raw.send_json(3, r#"{"type":"exec","argv":["a"]}"#).await;
    let Some(Request::Exec(exec)) = within(5, conn.next_request()).await else {
        panic!("no exec");
    };
    raw.send_json(3, r#"{"type":"download","path":"/"}"#).await;
    expect_error(&mut raw, 3, "already has a request in progress").await;
    // The first request is unaffected.
    exec.reply.started(1).await.unwrap();
    let (c, msg) = raw.recv_control().await.unwrap();
    assert_eq!((c, msg), (3, json!({"type": "started", "pid": 1})));
}

#[tokio::test]
async fn exit_follows_the_outputs_and_closes_them() {
    let (mut conn, mut raw) = server_and_raw_host().await;
    raw.send_json(4, r#"{"type":"exec","argv":["a"]}"#).await;
    let Some(Request::Exec(mut exec)) = within(5, conn.next_request()).await else {
        panic!("no exec");
    };
    exec.stdout.write_all(b"out").await.unwrap();
    // The agent forgets to close stderr: `exit` closes it, after the data.
    exec.reply
        .exit(protocol::ExitStatus {
            code: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut frames = Vec::new();
    while frames.len() < 4 {
        frames.push(raw.recv().await.unwrap());
    }
    assert_eq!(
        frames[0],
        Frame::Data {
            channel: 4,
            stream: Stream::Stdout,
            bytes: b"out".to_vec().into()
        }
    );
    let eofs: Vec<_> = frames[1..3].to_vec();
    assert!(eofs.contains(&Frame::Eof {
        channel: 4,
        stream: Stream::Stdout
    }));
    assert!(eofs.contains(&Frame::Eof {
        channel: 4,
        stream: Stream::Stderr
    }));
    let Frame::Control { channel: 4, bytes } = &frames[3] else {
        panic!("{:?}", frames[3]);
    };
    let msg: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    assert_eq!(msg["type"], "exit");
    let e = exec.stdout.write_all(b"late").await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn a_host_exceeding_its_window_closes_the_connection() {
    let (mut conn, mut raw) = server_and_raw_host().await;
    raw.send_json(2, r#"{"type":"exec","argv":["a"]}"#).await;
    let Some(Request::Exec(exec)) = within(5, conn.next_request()).await else {
        panic!("no exec");
    };
    let chunk = vec![0u8; MAX_DATA_CHUNK];
    for _ in 0..9 {
        raw.send(Frame::Data {
            channel: 2,
            stream: Stream::Stdin,
            bytes: chunk.clone().into(),
        })
        .await;
    }
    assert!(within(5, conn.next_request()).await.is_none());
    let e = conn.closed_error().unwrap();
    assert!(
        e.to_string()
            .contains("host connection closed: flow control"),
        "{e}"
    );
    assert!(conn.stats().peak_stream_buffered <= protocol::INITIAL_WINDOW as usize);
    drop(exec);
}

#[tokio::test]
async fn a_framing_error_from_the_host_ends_the_connection() {
    let (mut conn, mut raw) = server_and_raw_host().await;
    raw.io
        .write_all(&[0, 0, 0, 5, 42, 0, 0, 0, 0])
        .await
        .unwrap();
    assert!(within(5, conn.next_request()).await.is_none());
    let e = conn.closed_error().unwrap();
    assert!(e.to_string().contains("unknown frame kind 42"), "{e}");
    assert_eq!(raw.recv().await, None);
}

#[tokio::test]
async fn cancel_fails_the_streams_and_tells_the_execution() {
    let (mut conn, mut raw) = server_and_raw_host().await;
    raw.send_json(2, r#"{"type":"exec","argv":["a"]}"#).await;
    let Some(Request::Exec(mut exec)) = within(5, conn.next_request()).await else {
        panic!("no exec");
    };
    raw.send_json(2, r#"{"type":"cancel"}"#).await;
    assert_eq!(
        within(5, exec.events.recv()).await,
        Some(protocol::server::ExecEvent::Cancel)
    );
    let mut buf = Vec::new();
    let e = exec.stdin.read_to_end(&mut buf).await.unwrap_err();
    assert!(e.to_string().contains("cancelled"), "{e}");
    assert!(exec.stdout.write_all(b"x").await.is_err());
    assert!(!exec.reply.is_wanted());
    // Nothing more is sent for the cancelled channel.
    exec.reply
        .exit(protocol::ExitStatus::default())
        .await
        .unwrap();
    raw.send_json(0, r#"{"type":"ping","nonce":1}"#).await;
    let (c, msg) = raw.recv_control().await.unwrap();
    assert_eq!((c, msg["type"].as_str()), (0, Some("pong")));
}
