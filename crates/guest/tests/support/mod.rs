//! Running the real agent binary on a Unix socket and talking to it through the protocol's
//! client, for the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::client::Client;
use protocol::{ExecRequest, ExitStatus};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

/// The agent binary cargo built for these tests.
pub const AGENT: &str = env!("CARGO_BIN_EXE_boxlite-guest");

/// How long any single test step may take before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(60);

/// Where the agent as PID 1 mounts its own filesystems (`guest::init::mount_system`; `/dev`
/// covers `/dev/pts` and `/dev/shm`, `/sys` covers `/sys/fs/cgroup`). In its mount namespace
/// anything of the host's under these is hidden, so what a PID 1 test shares with the agent
/// (its listening socket) must live elsewhere.
pub const AGENT_MOUNTS: [&str; 5] = ["/proc", "/sys", "/dev", "/run", "/tmp"];

/// Where [`outside_agent_mounts`] makes its directory, the first that is not under
/// [`AGENT_MOUNTS`]: `/var/tmp` does not depend on where the checkout is (its target directory
/// is under `/tmp` when the checkout is) and is short; the target directory's scratch space
/// is the fallback where `/var/tmp` resolves into `/tmp`.
const SHARED_BASES: [&str; 2] = ["/var/tmp", env!("CARGO_TARGET_TMPDIR")];

/// The longest path a Unix socket can be bound at: `sun_path` holds 108 bytes with the NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// A fresh directory the agent as PID 1 still sees after its own mounts, whatever the
/// checkout's location and `$TMPDIR`.
pub fn outside_agent_mounts() -> tempfile::TempDir {
    let base = SHARED_BASES
        .iter()
        .filter_map(|b| Path::new(b).canonicalize().ok())
        .find(|b| !AGENT_MOUNTS.iter().any(|m| b.starts_with(m)))
        .unwrap_or_else(|| panic!("each of {SHARED_BASES:?} is under one of {AGENT_MOUNTS:?}"));
    tempfile::tempdir_in(base).unwrap()
}

/// Whether the tests run as root; root-only tests print why they skip otherwise.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A running agent process serving a socket in its own temporary directory.
pub struct Agent {
    child: Child,
    /// Holds the socket.
    pub dir: tempfile::TempDir,
    /// The socket path.
    pub socket: PathBuf,
}

impl Agent {
    /// Starts `boxlite-guest --listen … --root root`.
    pub fn start(root: &Path) -> Agent {
        Agent::start_with(Command::new(AGENT), root)
    }

    /// Starts the agent through `cmd` (e.g. a wrapper that sets up mounts and then runs
    /// [`AGENT`] with the arguments this appends).
    pub fn start_with(mut cmd: Command, root: &Path) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        // An agent started as another user (tests of the unprivileged mode) must be able
        // to create its socket here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let socket = dir.path().join("agent.sock");
        let child = cmd
            .arg("--listen")
            .arg(&socket)
            .arg("--root")
            .arg(root)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let agent = Agent { child, dir, socket };
        agent.wait_listening();
        agent
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the agent did not listen on {:?}", self.socket);
    }

    /// A new connection to the agent, after its hello.
    pub async fn connect(&self) -> Client {
        let stream = UnixStream::connect(&self.socket).await.unwrap();
        let (client, hello) = tokio::time::timeout(STEP, Client::handshake(stream))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hello.protocol_version.0, protocol::PROTOCOL_VERSION.0);
        client
    }

    /// Waits for the agent process to exit (after a shutdown).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the agent did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an execution produced.
#[derive(Debug)]
pub struct Output {
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
    /// How it ended.
    pub status: ExitStatus,
}

impl Output {
    /// Stdout as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text.
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `request` with empty stdin and collects everything.
pub async fn run(client: &Client, request: ExecRequest) -> protocol::Result<Output> {
    tokio::time::timeout(STEP, async {
        let mut exec = client.exec(request).await?;
        drop(exec.stdin.take());
        let mut stdout = exec.stdout.take().unwrap();
        let mut stderr = exec.stderr.take().unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        a.unwrap();
        b.unwrap();
        let status = exec.wait().await?;
        Ok(Output {
            stdout: out,
            stderr: err,
            status,
        })
    })
    .await
    .expect("the execution did not finish in time")
}

/// An `sh -c script` request.
pub fn sh(script: &str) -> ExecRequest {
    ExecRequest::new(["sh", "-c", script])
}

/// Whether process `pid` (of the host) is gone; waits up to a few seconds for it to go.
pub fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Waits until process `pid` runs `program` (its `comm`), e.g. after a shell's exec.
pub fn wait_for_program(pid: u32, program: &str) {
    let deadline = Instant::now() + STEP;
    let comm = format!("/proc/{pid}/comm");
    while std::fs::read_to_string(&comm).unwrap_or_default().trim() != program {
        assert!(
            Instant::now() < deadline,
            "process {pid} never ran {program}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads from `reader` until `needle` has appeared in what was read; returns all of it.
pub async fn read_until<R: tokio::io::AsyncRead + Unpin>(reader: &mut R, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(STEP, async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = reader.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "EOF before {needle:?}; got {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&seen)));
    String::from_utf8_lossy(&seen).into_owned()
}

/// A minimal root for chrooted executions: the host's /usr bind-mounted read-only (with the
/// merged-/usr links bin, lib, lib64, sbin), plus its own /etc/passwd and /etc/group. The
/// agent runs in a private mount namespace (`unshare --mount`), so the bind mount never
/// shows up on the host, even if a test dies.
pub struct TestRoot {
    /// The root directory.
    pub dir: tempfile::TempDir,
}

/// The users of [`TestRoot`]'s /etc/passwd.
pub const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
tester:x:4321:4321:Test User:/home/tester:/bin/sh
nohome:x:4400:4400::/:/bin/sh
";

/// The groups of [`TestRoot`]'s /etc/group.
pub const GROUP: &str = "\
root:x:0:
tester:x:4321:
extra:x:5555:tester
more:x:6666:someone,tester
nohome:x:4400:
";

impl TestRoot {
    /// Builds the root's directories and files.
    pub fn new() -> TestRoot {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in [
            "usr",
            "etc",
            "tmp",
            "work",
            "home/tester",
            "root",
            "proc",
            "dev",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for (link, target) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            std::os::unix::fs::symlink(target, r.join(link)).unwrap();
        }
        std::fs::write(r.join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(r.join("etc/group"), GROUP).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::set_permissions(r.join("work"), std::fs::Permissions::from_mode(0o777)).unwrap();
        TestRoot { dir }
    }

    /// The root's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts an agent chrooting into this root, in a private mount namespace with /usr
    /// bound in (needs root).
    pub fn start_agent(&self) -> Agent {
        let usr = self.path().join("usr");
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind -o ro /usr "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg(&usr)
            .arg(AGENT);
        Agent::start_with(cmd, self.path())
    }
}

/// Runs a program, failing the test unless it succeeds; returns its stdout.
pub fn cmd(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tiny image for the disk tests: dash as /bin/sh, a few coreutils and the libraries `ldd` says they need.
pub fn image_tree(dir: &Path) {
    let programs = [
        ("/bin/dash", "bin/sh"),
        ("/usr/bin/cat", "bin/cat"),
        ("/usr/bin/sleep", "bin/sleep"),
        ("/usr/bin/ls", "bin/ls"),
        ("/usr/bin/mkdir", "bin/mkdir"),
        ("/usr/bin/touch", "bin/touch"),
        ("/usr/bin/head", "bin/head"),
        ("/usr/bin/sha256sum", "bin/sha256sum"),
        ("/usr/bin/stty", "bin/stty"),
    ];
    for (host, inside) in programs {
        let dest = dir.join(inside);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(host, &dest).unwrap();
        for line in cmd("ldd", &[host]).lines() {
            let lib = line
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from);
            if let Some(lib) = lib {
                let dest = dir.join(lib.strip_prefix("/").unwrap());
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::copy(&lib, &dest).unwrap();
            }
        }
    }
    for d in ["etc", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
    // As in many images: resolv.conf links into /run; the agent must replace the link.
    std::os::unix::fs::symlink("../run/resolv.conf", dir.join("etc/resolv.conf")).unwrap();
}
