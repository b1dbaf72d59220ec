//! A tiny agent built on `protocol::server` (commands are interpreted, not spawned), and a
//! raw frame peer for playing a misbehaving end.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use protocol::client::Client;
use protocol::frame::{Frame, FrameDecoder, encode};
use protocol::server::{Connection, Download, Exec, ExecEvent, Mount, Request, Upload};
use protocol::{CAPABILITY_MOUNT, ErrorKind, ExitStatus, Hello, MountSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

/// Files the test agent keeps in memory: upload stores, download reads.
pub type Files = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// A connected client and the agent task serving it.
pub struct Pair {
    pub client: Client,
    pub agent: JoinHandle<()>,
    /// Copies bytes between the client's socket and the agent's; aborting it cuts the
    /// connection as a crashed VM would, with both ends still alive.
    pub cable: JoinHandle<()>,
    pub files: Files,
}

/// Connects a client to the test agent over real sockets.
pub async fn pair() -> Pair {
    let (host, mut host_end) = UnixStream::pair().unwrap();
    let (mut guest_end, guest) = UnixStream::pair().unwrap();
    let cable = tokio::spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut host_end, &mut guest_end).await;
    });
    let files = Files::default();
    let agent = tokio::spawn(agent(guest, files.clone()));
    let (client, hello) = Client::handshake(host).await.unwrap();
    assert_eq!(hello.agent_version, "test-agent");
    assert_eq!(hello.boot_time_ns, 42);
    Pair {
        client,
        agent,
        cable,
        files,
    }
}

/// Serves one connection until shutdown or until it closes.
pub async fn agent<IO>(io: IO, files: Files)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut hello = Hello::new("test-agent", 42);
    hello.capabilities = vec![CAPABILITY_MOUNT.into()];
    let mut conn = Connection::start(io, hello).await.unwrap();
    // Aborting the agent (or powering off) takes everything in flight with it.
    let mut tasks = AbortOnDrop(Vec::new());
    while let Some(request) = conn.next_request().await {
        let stats = conn.stats();
        match request {
            Request::Exec(exec) => tasks.0.push(tokio::spawn(run(exec, stats, files.clone()))),
            Request::Upload(up) => tasks.0.push(tokio::spawn(upload(up, files.clone()))),
            Request::Download(down) => tasks.0.push(tokio::spawn(download(down, files.clone()))),
            Request::Mount(m) => tasks.0.push(tokio::spawn(mount(m, files.clone()))),
            Request::Shutdown(reply) => {
                reply.shutting_down().await.unwrap();
                break;
            }
        }
    }
}

struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn exited(code: i32) -> ExitStatus {
    ExitStatus {
        code: Some(code),
        ..ExitStatus::default()
    }
}

fn killed(signal: i32) -> ExitStatus {
    ExitStatus {
        signal: Some(signal),
        ..ExitStatus::default()
    }
}

/// A byte pattern that a reader can check at any offset.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|i| (i % 251) as u8)
        .collect()
}

async fn run(mut exec: Exec, stats: protocol::mux::Stats, files: Files) {
    let argv = exec.request.argv.clone();
    let arg = |i: usize| argv.get(i).cloned().unwrap_or_default();
    let num = |i: usize| arg(i).parse::<u64>().unwrap_or(0);
    let reply = exec.reply;
    match argv[0].as_str() {
        "echo" => {
            reply.started(100).await.unwrap();
            exec.stdout
                .write_all(argv[1..].join(" ").as_bytes())
                .await
                .unwrap();
            exec.stderr.write_all(b"to stderr").await.unwrap();
            exec.stdout.close().await.unwrap();
            exec.stderr.close().await.unwrap();
            reply.exit(exited(0)).await.unwrap();
        }
        "cat" => {
            reply.started(101).await.unwrap();
            drop(exec.stderr);
            tokio::io::copy(&mut exec.stdin, &mut exec.stdout)
                .await
                .unwrap();
            exec.stdout.close().await.unwrap();
            reply.exit(exited(0)).await.unwrap();
        }
        "produce" => {
            // `produce N`: N pattern bytes on stdout.
            reply.started(102).await.unwrap();
            let total = num(1);
            let mut sent = 0u64;
            while sent < total {
                let n = (total - sent).min(100_000) as usize;
                if exec.stdout.write_all(&pattern(sent, n)).await.is_err() {
                    return;
                }
                sent += n as u64;
            }
            drop(exec.stdout);
            reply.exit(exited(0)).await.unwrap();
        }
        "exit" => {
            reply.started(103).await.unwrap();
            reply.exit(exited(num(1) as i32)).await.unwrap();
        }
        "sleep" => {
            // Runs until signalled or cancelled.
            reply.started(104).await.unwrap();
            while let Some(event) = exec.events.recv().await {
                match event {
                    ExecEvent::Signal { signal, .. } => {
                        reply.exit(killed(signal)).await.unwrap();
                        return;
                    }
                    ExecEvent::Cancel => {
                        let _ = reply.exit(killed(9)).await;
                        return;
                    }
                    ExecEvent::Resize { rows, cols } => {
                        let line = format!("{rows}x{cols}\n");
                        exec.stdout.write_all(line.as_bytes()).await.unwrap();
                    }
                }
            }
        }
        "slowstart" => {
            // Answers `started` late; records a cancel.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = reply.started(108).await;
            while let Some(event) = exec.events.recv().await {
                if event == ExecEvent::Cancel {
                    let key = format!("cancelled:{}", reply.channel());
                    files.lock().unwrap().insert(key, Vec::new());
                    assert!(!reply.is_wanted());
                    return;
                }
            }
        }
        "flood" => {
            // Writes 1 MB (blocking on the window while the host does not read), then
            // reports the last resize and exits on the first signal.
            reply.started(109).await.unwrap();
            exec.stdout.write_all(&pattern(0, 1_000_000)).await.unwrap();
            let mut last = None;
            while let Some(event) = exec.events.recv().await {
                match event {
                    ExecEvent::Resize { rows, cols } => last = Some((rows, cols)),
                    ExecEvent::Signal { .. } => break,
                    ExecEvent::Cancel => return,
                }
            }
            let (rows, cols) = last.unwrap_or_default();
            exec.stdout
                .write_all(format!("{rows}x{cols}").as_bytes())
                .await
                .unwrap();
            reply.exit(exited(0)).await.unwrap();
        }
        "nostdin" => {
            // Never reads stdin; reports the connection's stats when signalled.
            reply.started(105).await.unwrap();
            let _stdin = exec.stdin;
            while let Some(event) = exec.events.recv().await {
                if let ExecEvent::Signal { .. } = event {
                    break;
                }
            }
            reply.exit(exited(0)).await.unwrap();
        }
        "stats" => {
            reply.started(106).await.unwrap();
            let line = format!("{} {}", stats.peak_stream_buffered, stats.buffered_in);
            exec.stdout.write_all(line.as_bytes()).await.unwrap();
            reply.exit(exited(0)).await.unwrap();
        }
        "hang" => {
            // Started, then never answers again (until the connection goes).
            reply.started(107).await.unwrap();
            std::future::pending::<()>().await;
        }
        "drop" => drop(reply),
        other => {
            let message = format!("command not found: {other} (no such file in PATH)");
            reply.error(ErrorKind::NotFound, message).await.unwrap();
        }
    }
}

async fn upload(mut up: Upload, files: Files) {
    if up.path == "/reject" {
        up.reply
            .error(ErrorKind::PermissionDenied, "read-only: /reject")
            .await
            .unwrap();
        return;
    }
    let mut data = Vec::new();
    match up.data.read_to_end(&mut data).await {
        Ok(_) => {
            files.lock().unwrap().insert(up.path.clone(), data);
            up.reply.done().await.unwrap();
        }
        Err(e) => {
            files
                .lock()
                .unwrap()
                .insert(format!("{}.failed", up.path), e.to_string().into_bytes());
            let _ = up.reply.error(ErrorKind::Io, e.to_string()).await;
        }
    }
}

async fn download(mut down: Download, files: Files) {
    if down.path == "/fail-midway" {
        down.data.write_all(&pattern(0, 300_000)).await.unwrap();
        down.reply
            .error(ErrorKind::Io, "disk error reading /fail-midway")
            .await
            .unwrap();
        return;
    }
    let data = files.lock().unwrap().get(&down.path).cloned();
    let Some(data) = data else {
        let message = format!("{}: no such file or directory", down.path);
        down.reply
            .error(ErrorKind::NotFound, message)
            .await
            .unwrap();
        return;
    };
    if down.data.write_all(&data).await.is_err() {
        files
            .lock()
            .unwrap()
            .insert(format!("{}.cancelled", down.path), Vec::new());
        return;
    }
    down.data.close().await.unwrap();
    down.reply.done().await.unwrap();
}

/// Records each volume as the file `mounted:PATH` holding its source; a volume at `/fail`
/// fails (after the ones before it), one at `/hang` is never answered.
async fn mount(m: Mount, files: Files) {
    for volume in &m.volumes {
        match volume.path.as_str() {
            "/fail" => {
                let message = format!("mounting volume {}: no such device", volume.path);
                m.reply.error(ErrorKind::NotFound, message).await.unwrap();
                return;
            }
            "/hang" => std::future::pending::<()>().await,
            _ => {}
        }
        let source = match &volume.source {
            MountSource::Virtiofs { tag } => format!("virtiofs:{tag}"),
            MountSource::Disk { device, fstype } => format!("{fstype}:{device}"),
        };
        files
            .lock()
            .unwrap()
            .insert(format!("mounted:{}", volume.path), source.into_bytes());
    }
    m.reply.done().await.unwrap();
}

/// One end of a socket spoken in raw frames.
pub struct Raw {
    pub io: UnixStream,
    decoder: FrameDecoder,
}

impl Raw {
    pub fn new(io: UnixStream) -> Raw {
        Raw {
            io,
            decoder: FrameDecoder::new(),
        }
    }

    pub async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        encode(&frame, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    pub async fn send_json(&mut self, channel: u32, json: &str) {
        self.send(Frame::Control {
            channel,
            bytes: json.as_bytes().to_vec().into(),
        })
        .await;
    }

    /// The next frame, or `None` at EOF or on a framing error.
    pub async fn recv(&mut self) -> Option<Frame> {
        let mut buf = [0u8; 4096];
        loop {
            match self.decoder.next_frame() {
                Ok(Some(f)) => return Some(f),
                Ok(None) => {}
                Err(_) => return None,
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut buf))
                .await
                .expect("the peer went silent")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    /// The next CONTROL frame's JSON, skipping other frames.
    pub async fn recv_control(&mut self) -> Option<(u32, serde_json::Value)> {
        loop {
            if let Frame::Control { channel, bytes } = self.recv().await? {
                return Some((channel, serde_json::from_slice(&bytes).unwrap()));
            }
        }
    }
}

/// Fails the test if `f` takes longer than `secs`.
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out: something hangs")
}
