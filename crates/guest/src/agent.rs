//! Serving the protocol: each request of a connection in its own task.
//!
//! An execution's task pumps the host's stdin into the process and the process's stdout and
//! stderr to the host through the connection's flow-controlled streams, so a host that stops
//! reading one execution stalls only that process (its pipe fills and it blocks in `write`).
//! It sends `exit` once the process has been reaped *and* its outputs reached end of file —
//! background processes that keep the outputs open keep the execution open, as with `ssh` —
//! and enforces the timeout on the whole process group: SIGTERM, then SIGKILL after
//! [`TERM_GRACE`]. Uploads and downloads run the blocking tar code on tokio's blocking pool,
//! connected to the streams by bounded channels; so do mounts ([`crate::volume`]), one
//! request at a time.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::server::{
    Connection, Download, Exec, ExecEvent, ExecEvents, Mount, Request, ShutdownReply, Upload,
};
use protocol::{CAPABILITY_MOUNT, ErrorKind, ExitStatus, Hello, MAX_DATA_CHUNK};
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::fdio::FdStream;
use crate::process::{self, Spec};
use crate::reaper::{Reaper, Termination};
use crate::root::BoxRoot;
use crate::volume::{self, Mounted};

/// How long a timed-out process group gets between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// Chunks in flight between a transfer's stream and its blocking tar code: with
/// [`MAX_DATA_CHUNK`]-sized chunks, a quarter megabyte per transfer.
const TRANSFER_QUEUE: usize = 8;

/// Bytes the download side gathers before handing a chunk to the stream (tar writes 512-byte
/// blocks, each too small to be a frame of its own).
const DOWNLOAD_CHUNK: usize = MAX_DATA_CHUNK;

/// What every connection of this agent shares.
pub struct Agent {
    root: std::result::Result<Arc<BoxRoot>, String>,
    reaper: Reaper,
    hello: Hello,
    /// Process groups of executions still running, for a shutdown to end them.
    running: Mutex<HashSet<i32>>,
    /// The volumes mounted so far, for a shutdown to unmount; held while mounting, so mount
    /// requests run one at a time, in the order they came.
    volumes: Mutex<Vec<Mounted>>,
}

/// How a connection ended.
pub enum Ending {
    /// The host asked to shut down; answer it once everything is stopped.
    Shutdown(ShutdownReply),
    /// The host went away (or the transport failed).
    Closed,
}

impl Agent {
    /// An agent serving `root`, or answering every request that needs a root with the reason
    /// it could not be built (that reason also becomes the hello capability `root-failed`).
    pub fn new(root: std::result::Result<BoxRoot, String>) -> std::io::Result<Arc<Agent>> {
        let mut capabilities: Vec<String> = [
            "exec",
            "tty",
            "signal",
            "timeout",
            "upload",
            "download",
            CAPABILITY_MOUNT,
        ]
        .map(String::from)
        .to_vec();
        if root.is_err() {
            capabilities.push("root-failed".into());
        }
        let mut hello = Hello::new(env!("CARGO_PKG_VERSION"), boot_time_ns());
        hello.capabilities = capabilities;
        Ok(Arc::new(Agent {
            root: root.map(Arc::new),
            reaper: Reaper::global()?,
            hello,
            running: Mutex::new(HashSet::new()),
            volumes: Mutex::new(Vec::new()),
        }))
    }

    fn root(&self) -> std::result::Result<Arc<BoxRoot>, String> {
        self.root.clone()
    }

    /// Serves one connection until the host shuts down or goes away.
    pub async fn serve<R, W>(self: &Arc<Self>, reader: R, writer: W) -> Ending
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut hello = self.hello.clone();
        hello.boot_time_ns = boot_time_ns();
        let mut conn = match Connection::start_split(reader, writer, hello).await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("boxlite-guest: starting a connection: {e}");
                return Ending::Closed;
            }
        };
        while let Some(request) = conn.next_request().await {
            let agent = self.clone();
            match request {
                Request::Exec(exec) => {
                    tokio::spawn(async move { agent.exec(exec).await });
                }
                Request::Upload(upload) => {
                    tokio::spawn(async move { agent.upload(upload).await });
                }
                Request::Download(download) => {
                    tokio::spawn(async move { agent.download(download).await });
                }
                Request::Mount(mount) => {
                    tokio::spawn(async move { agent.mount(mount).await });
                }
                Request::Shutdown(reply) => return Ending::Shutdown(reply),
            }
        }
        if let Some(e) = conn.closed_error() {
            eprintln!("boxlite-guest: connection closed: {e}");
        }
        Ending::Closed
    }

    /// Kills the process group of every execution still running (a host-mode shutdown; in
    /// the VM, [`crate::init::stop_everything`] ends every process instead).
    pub fn kill_running(&self) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for pgid in running.iter() {
            if let Some(pid) = Pid::from_raw(*pgid) {
                let _ = rustix::process::kill_process_group(pid, Signal::KILL);
            }
        }
    }

    /// Hands over the volumes mounted so far, for a shutdown to unmount them.
    pub fn take_volumes(&self) -> Vec<Mounted> {
        std::mem::take(&mut *self.volumes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn mount(self: Arc<Self>, mount: Mount) {
        let Mount { volumes, reply } = mount;
        let root = match self.root() {
            Ok(root) => root,
            Err(why) => {
                let _ = reply.error(ErrorKind::Io, why).await;
                return;
            }
        };
        let agent = self.clone();
        // Mounting opens and creates the box's directories and may wait on a disk.
        let mounted = tokio::task::spawn_blocking(move || {
            let mut mounted = agent.volumes.lock().unwrap_or_else(|p| p.into_inner());
            volume::mount_all(&root, &volumes, &mut mounted)
        })
        .await;
        let _ = match mounted {
            Ok(Ok(())) => reply.done().await,
            Ok(Err(e)) => reply.error(e.kind(), e.to_string()).await,
            Err(e) => {
                reply
                    .error(ErrorKind::Io, format!("mounting volumes: {e}"))
                    .await
            }
        };
    }

    async fn exec(self: Arc<Self>, exec: Exec) {
        let Exec {
            request,
            stdin,
            stdout,
            stderr,
            events,
            reply,
        } = exec;
        let root = match self.root() {
            Ok(root) => root,
            Err(why) => {
                let _ = reply.error(ErrorKind::Io, why).await;
                return;
            }
        };
        let spec = Spec {
            argv: request.argv,
            env: request.env,
            cwd: request.cwd,
            user: request.user,
            tty: request.tty.map(|t| (t.rows, t.cols)),
        };
        let reaper = self.reaper.clone();
        // Resolving users and commands reads the box's files: keep it off the runtime thread.
        let spawned =
            tokio::task::spawn_blocking(move || process::spawn(&root, &reaper, &spec)).await;
        let child = match spawned {
            Ok(Ok(child)) => child,
            Ok(Err(e)) => {
                let _ = reply.error(e.kind(), e.to_string()).await;
                return;
            }
            Err(e) => {
                let _ = reply
                    .error(ErrorKind::Io, format!("starting the process: {e}"))
                    .await;
                return;
            }
        };
        let pid = child.pid;
        let raw_pid = pid.as_raw_nonzero().get();
        self.lock_running().insert(raw_pid);
        let _ = reply
            .started(u32::try_from(raw_pid).unwrap_or_default())
            .await;
        let timeout = request.timeout_ms.map(Duration::from_millis);
        let (termination, timed_out) = self
            .supervise(child, stdin, stdout, stderr, events, timeout)
            .await;
        self.lock_running().remove(&raw_pid);
        let status = match termination {
            Termination::Code(code) => ExitStatus {
                code: Some(code),
                signal: None,
                timed_out,
            },
            Termination::Signal(signal) => ExitStatus {
                code: None,
                signal: Some(signal),
                timed_out,
            },
        };
        let _ = reply.exit(status).await;
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs an execution to its end: pumps, events, timeout. Returns how the process ended
    /// and whether the timeout killed it.
    async fn supervise(
        &self,
        child: process::Process,
        stdin: protocol::mux::StreamReader,
        stdout: protocol::mux::StreamWriter,
        mut stderr: protocol::mux::StreamWriter,
        mut events: ExecEvents,
        timeout: Option<Duration>,
    ) -> (Termination, bool) {
        let process::Process {
            pid,
            stdin: child_in,
            stdout: child_out,
            stderr: child_err,
            tty,
            mut exit,
        } = child;
        // With a tty, stdout is the pty master: keep a handle on it for resizes.
        let child_out = Arc::new(child_out);
        let master = tty.then(|| child_out.clone());
        let out_task = tokio::spawn(pump_out(child_out, stdout));
        let err_task = match child_err {
            Some(err) => tokio::spawn(pump_out(Arc::new(err), stderr)),
            None => {
                let _ = stderr.close().await;
                tokio::spawn(async {})
            }
        };
        let in_task = tokio::spawn(pump_in(stdin, child_in, tty));
        let outputs = async {
            let _ = out_task.await;
            let _ = err_task.await;
        };
        tokio::pin!(outputs);

        let mut ended = None;
        let mut outputs_done = false;
        let mut events_open = true;
        let mut timed_out = false;
        let mut next_kill = timeout.map(|t| (Instant::now() + t, Signal::TERM));
        while ended.is_none() || !outputs_done {
            let deadline = next_kill.map(|(at, _)| at);
            tokio::select! {
                status = &mut exit, if ended.is_none() => {
                    // The reaper never drops a registered sender; if it did, report a kill.
                    ended = Some(status.unwrap_or(Termination::Signal(libc::SIGKILL)));
                }
                () = &mut outputs, if !outputs_done => outputs_done = true,
                event = events.recv(), if events_open => match event {
                    Some(ExecEvent::Signal { signal, group }) => {
                        self.signal(pid, signal, group);
                    }
                    Some(ExecEvent::Resize { rows, cols }) => {
                        if let Some(m) = &master {
                            let _ = process::resize(m, rows, cols);
                        }
                    }
                    // Cancelled, or the connection is gone: nobody can see this execution
                    // any more (there is no reattaching), so end it.
                    Some(ExecEvent::Cancel) | None => {
                        events_open = false;
                        self.signal(pid, libc::SIGKILL, true);
                    }
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    if let Some((_, signal)) = next_kill {
                        timed_out = true;
                        self.signal(pid, signal.as_raw(), true);
                        next_kill = (signal == Signal::TERM)
                            .then(|| (Instant::now() + TERM_GRACE, Signal::KILL));
                    }
                }
            }
        }
        in_task.abort();
        (
            ended.unwrap_or(Termination::Signal(libc::SIGKILL)),
            timed_out,
        )
    }

    /// Signals an execution's process or process group. After the process itself has been
    /// reaped its group may live on (background children), and the group id stays reserved
    /// while it has members, so group signals still go out then.
    fn signal(&self, pid: Pid, signal: i32, group: bool) {
        let Some(sig) = Signal::from_named_raw(signal) else {
            eprintln!("boxlite-guest: ignoring signal {signal}: not a signal this agent sends");
            return;
        };
        match self.reaper.signal(pid, sig, group) {
            Ok(true) => {}
            Ok(false) if group => {
                let _ = rustix::process::kill_process_group(pid, sig);
            }
            Ok(false) => {}
            Err(e) => eprintln!("boxlite-guest: signal {signal} to {pid:?}: {e}"),
        }
    }

    async fn upload(self: Arc<Self>, upload: Upload) {
        let Upload {
            path,
            mut data,
            reply,
        } = upload;
        let root = match self.root() {
            Ok(root) => root,
            Err(why) => {
                let _ = reply.error(ErrorKind::Io, why).await;
                return;
            }
        };
        let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(TRANSFER_QUEUE);
        let dest = path.clone();
        let unpacking = tokio::task::spawn_blocking(move || {
            crate::unpack::unpack(&root, &dest, ChannelReader::new(rx))
        });
        let mut buf = vec![0u8; MAX_DATA_CHUNK];
        loop {
            let chunk = match data.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => Ok(buf[..n].to_vec()),
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            // A closed receiver means the unpacker stopped (it failed); its result says why.
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
        drop(data);
        match unpacking.await {
            Ok(Ok(_)) => {
                let _ = reply.done().await;
            }
            Ok(Err(e)) => {
                let _ = reply.error(e.kind(), e.to_string()).await;
            }
            Err(e) => {
                let _ = reply
                    .error(ErrorKind::Io, format!("upload to {path}: {e}"))
                    .await;
            }
        }
    }

    async fn download(self: Arc<Self>, download: Download) {
        let Download {
            path,
            mut data,
            reply,
        } = download;
        let root = match self.root() {
            Ok(root) => root,
            Err(why) => {
                let _ = reply.error(ErrorKind::Io, why).await;
                return;
            }
        };
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TRANSFER_QUEUE);
        let src = path.clone();
        let packing = tokio::task::spawn_blocking(move || {
            let out = io::BufWriter::with_capacity(DOWNLOAD_CHUNK, ChannelWriter { tx });
            crate::pack::pack(&root, &src, out)
        });
        let mut sent = true;
        while let Some(chunk) = rx.recv().await {
            if data.write_all(&chunk).await.is_err() {
                // The host cancelled or went away; dropping `rx` stops the packer.
                sent = false;
                break;
            }
        }
        drop(rx);
        let result = packing.await;
        match result {
            Ok(Ok(_)) if sent => {
                let _ = data.close().await;
                let _ = reply.done().await;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let _ = reply.error(e.kind(), e.to_string()).await;
            }
            Err(e) => {
                let _ = reply
                    .error(ErrorKind::Io, format!("download {path}: {e}"))
                    .await;
            }
        }
    }
}

/// Copies a process output to its stream until end of file, then sends EOF. If the host
/// side fails (cancelled, gone), the pipe is closed so the process gets EPIPE rather than
/// blocking forever.
async fn pump_out(source: Arc<FdStream>, mut sink: protocol::mux::StreamWriter) {
    let mut buf = vec![0u8; MAX_DATA_CHUNK];
    loop {
        match source.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if sink.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = sink.close().await;
}

/// Copies the host's stdin into the process until EOF, then closes the pipe (with a tty,
/// types the terminal's end-of-file character instead, as closing the master would hang up
/// the terminal).
async fn pump_in(mut source: protocol::mux::StreamReader, sink: FdStream, tty: bool) {
    let mut buf = vec![0u8; MAX_DATA_CHUNK];
    loop {
        match source.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if sink.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            // The channel ended without EOF (cancelled): close the pipe all the same.
            Err(_) => return,
        }
    }
    if tty {
        if let Some(eof) = process::tty_eof_byte(&sink) {
            let _ = sink.write_all(&[eof]).await;
        }
        // Keep the master open: the reading side still needs it and the process may still
        // be writing; the task is aborted when the execution ends.
        std::future::pending::<()>().await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `CLOCK_BOOTTIME` now, in nanoseconds.
fn boot_time_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// The blocking side of an upload: reads the chunks the async side receives.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Vec<u8>>>) -> ChannelReader {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The blocking side of a download: hands what the packer writes to the async side.
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.blocking_send(buf.to_vec()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the host stopped receiving the download",
            )
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
