//! The supervisor's socket: every process that talks to a box speaks the agent protocol to the
//! supervisor, which forwards each request over its one connection to the guest.
//!
//! The guest has one agent channel, so it can serve one host at a time; the relay lets any
//! number of processes (the creator, a second `exec`, a `cp`) use the box at once. Each
//! client connection is a [`server::Connection`] facing the caller and every request becomes
//! the same request on the guest's [`Client`]: streams are pumped both ways, signals and
//! resizes are passed on, and a caller that goes away has its processes killed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use protocol::client::Client;
use protocol::server::{self, Connection, Exec, ExecEvent, Request, ShutdownReply};
use protocol::{ErrorKind, Hello};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// SIGKILL: what a process gets when its caller went away.
const SIGKILL: i32 = 9;

/// How long past its timeout a command may run before the host kills it, and how long the
/// guest then has to report the kill before the host ends the execution itself.
pub const HOST_TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// The status of a command the host gave up on: killed for its timeout.
fn overdue_status() -> protocol::ExitStatus {
    protocol::ExitStatus {
        code: None,
        signal: Some(SIGKILL),
        timed_out: true,
    }
}

/// What relayed work adds up to, for `metrics()`.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Executions started.
    pub execs: AtomicU64,
    /// Bytes of stdin, stdout, stderr and transfers passed through.
    pub bytes: AtomicU64,
}

/// What a client asks of the supervisor itself rather than the guest.
#[derive(Debug)]
pub enum Control {
    /// Stop the box; answer once the guest powers off.
    Shutdown(ShutdownReply),
}

/// Serves one caller on `stream` until it disconnects.
pub async fn serve(
    stream: UnixStream,
    guest: Arc<Client>,
    hello: Hello,
    control: mpsc::Sender<Control>,
    stats: Arc<RelayStats>,
) {
    let mut conn = match Connection::start(stream, hello).await {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("boxlite-supervisor: a caller's connection failed to start: {e}");
            return;
        }
    };
    while let Some(request) = conn.next_request().await {
        match request {
            Request::Exec(exec) => {
                tokio::spawn(relay_exec(guest.clone(), exec, stats.clone()));
            }
            Request::Upload(up) => {
                let guest = guest.clone();
                let stats = stats.clone();
                tokio::spawn(async move {
                    let counted = Counted::new(up.data, &stats.bytes);
                    let result = guest.upload(&up.path, counted).await;
                    answer(up.reply, result).await;
                });
            }
            Request::Download(down) => {
                let guest = guest.clone();
                let stats = stats.clone();
                tokio::spawn(async move {
                    let mut sink = Counted::new(down.data, &stats.bytes);
                    let result = guest.download(&down.path, &mut sink).await;
                    let _ = sink.inner.shutdown().await;
                    answer(down.reply, result).await;
                });
            }
            Request::Mount(mount) => {
                // Volumes are the supervisor's to mount, at boot, from the box's options: a
                // caller asking for one would bypass the host's locks and daemons.
                let _ = mount
                    .reply
                    .error(
                        ErrorKind::PermissionDenied,
                        "volumes are mounted by the box's supervisor at boot; \
                         attach them with the box's options",
                    )
                    .await;
            }
            Request::Shutdown(reply) => {
                // The supervisor drives the shutdown (it must also see the VM end); if it is
                // already gone the reply is dropped, which the caller sees as the end.
                let _ = control.send(Control::Shutdown(reply)).await;
            }
        }
    }
}

/// Answers a transfer request with the guest's result.
async fn answer(reply: server::Reply, result: protocol::Result<()>) {
    let _ = match result {
        Ok(()) => reply.done().await,
        Err(e) => {
            let (kind, message) = describe(&e);
            reply.error(kind, message).await
        }
    };
}

/// The agent's own error kind and message, or an I/O error describing a broken link.
fn describe(error: &protocol::Error) -> (ErrorKind, String) {
    match error {
        protocol::Error::Remote { kind, message } => (*kind, message.clone()),
        other => (ErrorKind::Io, format!("the box's agent: {other}")),
    }
}

/// Runs one caller's execution in the guest and pumps it both ways.
async fn relay_exec(guest: Arc<Client>, exec: Exec, stats: Arc<RelayStats>) {
    let Exec {
        request,
        stdin,
        stdout,
        stderr,
        mut events,
        reply,
    } = exec;
    // The guest enforces the timeout; the host does too, in case the guest does not.
    let deadline = request
        .timeout_ms
        .map(|ms| Duration::from_millis(ms).saturating_add(HOST_TIMEOUT_GRACE));
    let mut running = match guest.exec(request).await {
        Ok(running) => running,
        Err(e) => {
            let (kind, message) = describe(&e);
            let _ = reply.error(kind, message).await;
            return;
        }
    };
    stats.execs.fetch_add(1, Ordering::Relaxed);
    let _ = reply.started(running.pid()).await;
    let bytes = &stats.bytes;
    let guest_stdin = running.stdin.take();
    let guest_stdout = running.stdout.take();
    let guest_stderr = running.stderr.take();
    let running = &running;
    // The outputs reach EOF when the process ends; then its exit is the answer.
    let outputs = async {
        tokio::join!(
            async {
                if let Some(out) = guest_stdout {
                    pump(out, stdout, bytes).await;
                }
            },
            async {
                if let Some(err) = guest_stderr {
                    pump(err, stderr, bytes).await;
                }
            }
        );
    };
    // stdin and the caller's events run beside the outputs but never decide the end: a
    // caller may keep stdin open after the process exits.
    let inputs = async {
        tokio::join!(
            async {
                if let Some(guest_stdin) = guest_stdin {
                    pump(stdin, guest_stdin, bytes).await;
                }
            },
            async {
                while let Some(event) = events.recv().await {
                    let sent = match event {
                        ExecEvent::Signal { signal, group } => running.signal(signal, group).await,
                        ExecEvent::Resize { rows, cols } => running.resize(rows, cols).await,
                        // The caller went away: nobody can read the output or end the process.
                        ExecEvent::Cancel => running.signal(SIGKILL, true).await,
                    };
                    if sent.is_err() {
                        break;
                    }
                }
            }
        );
        std::future::pending::<()>().await;
    };
    let overdue = async {
        match deadline {
            Some(deadline) => tokio::time::sleep(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = outputs => {}
        () = inputs => {}
        () = overdue => {
            // Past the timeout and the guest's grace: kill it from here, and if the guest
            // does not even report that, end the execution for the caller anyway.
            let _ = running.signal(SIGKILL, true).await;
            match tokio::time::timeout(HOST_TIMEOUT_GRACE, running.wait()).await {
                Ok(Ok(mut status)) => {
                    status.timed_out = true;
                    let _ = reply.exit(status).await;
                }
                _ => {
                    let _ = reply.exit(overdue_status()).await;
                }
            }
            return;
        }
    }
    let status = running.wait().await;
    match status {
        Ok(status) => {
            let _ = reply.exit(status).await;
        }
        Err(e) => {
            let (kind, message) = describe(&e);
            let _ = reply.error(kind, message).await;
        }
    }
}

/// Copies `from` to `to` until EOF or an error on either side, counting bytes, then closes `to`.
async fn pump<R, W>(from: R, mut to: W, bytes: &AtomicU64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut from = Counted::new(from, bytes);
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
}

/// A reader or writer that adds what passes through it to a counter.
struct Counted<'a, T> {
    inner: T,
    bytes: &'a AtomicU64,
}

impl<'a, T> Counted<'a, T> {
    fn new(inner: T, bytes: &'a AtomicU64) -> Counted<'a, T> {
        Counted { inner, bytes }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<'_, T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.bytes.fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<'_, T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &polled {
            self.bytes.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use protocol::ExecRequest;

    use super::*;

    /// A guest agent that starts every command and never reports an end: the host must end
    /// an execution with a timeout by itself.
    async fn hostile_guest(stream: UnixStream) {
        let mut conn = Connection::start(stream, Hello::new("hostile", 0))
            .await
            .unwrap();
        let mut held = Vec::new();
        while let Some(request) = conn.next_request().await {
            if let Request::Exec(exec) = request {
                let _ = exec.reply.started(4242).await;
                // Held, never answered: the process "runs" for ever.
                held.push(exec);
            }
        }
    }

    #[tokio::test]
    async fn a_timeout_the_guest_ignores_is_enforced_by_the_host() {
        let (guest_host, guest_guest) = UnixStream::pair().unwrap();
        tokio::spawn(hostile_guest(guest_guest));
        let (guest, hello) = Client::handshake(guest_host).await.unwrap();
        let (relay_end, caller_end) = UnixStream::pair().unwrap();
        let (control, _control_rx) = mpsc::channel(1);
        tokio::spawn(serve(
            relay_end,
            Arc::new(guest),
            hello,
            control,
            Arc::new(RelayStats::default()),
        ));
        let (caller, _) = Client::handshake(caller_end).await.unwrap();
        let started = Instant::now();
        let running = caller
            .exec(ExecRequest {
                argv: vec!["sleep".into(), "1000".into()],
                env: Vec::new(),
                cwd: None,
                user: None,
                tty: None,
                timeout_ms: Some(100),
            })
            .await
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), running.wait())
            .await
            .expect("the host did not end the execution")
            .unwrap();
        assert!(status.timed_out, "{status:?}");
        assert_eq!(status.signal, Some(SIGKILL));
        // The timeout, then the guest's grace, then the host's.
        assert!(started.elapsed() >= Duration::from_millis(100) + 2 * HOST_TIMEOUT_GRACE);
    }
}
