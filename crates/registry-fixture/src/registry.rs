//! A real `docker-registry serve` (distribution 2.8) child on 127.0.0.1 with
//! its own temp dir for config, storage, certificates and logs.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::certs::{TlsFiles, make_tls};
use crate::http;
use crate::token::TokenServer;
use crate::util::{free_port, random_bytes, run};

/// How long a registry may take to answer `/v2/` after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How the registry authenticates clients.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// No authentication: anyone may pull and push.
    Anonymous,
    /// htpasswd (bcrypt) Basic authentication for one user.
    Basic {
        /// The user name.
        user: &'a str,
        /// The user's password.
        password: &'a str,
    },
    /// Bearer tokens from a [`TokenServer`], the Docker Hub flow.
    Token(&'a TokenServer),
}

/// The owned form of [`Auth`], kept so `restart` needs no borrow.
#[derive(Debug, Clone)]
enum AuthConfig {
    Anonymous,
    Basic {
        user: String,
        password: String,
    },
    Token {
        realm: String,
        service: String,
        issuer: String,
        cert_pem: Vec<u8>,
    },
}

/// Configures a [`Registry`] before it starts.
#[derive(Debug, Clone)]
pub struct RegistryBuilder {
    auth: AuthConfig,
    tls: bool,
    storage: Option<PathBuf>,
}

impl RegistryBuilder {
    /// Chooses the authentication (default anonymous).
    pub fn auth(mut self, auth: Auth<'_>) -> Self {
        self.auth = match auth {
            Auth::Anonymous => AuthConfig::Anonymous,
            Auth::Basic { user, password } => AuthConfig::Basic {
                user: user.into(),
                password: password.into(),
            },
            Auth::Token(server) => AuthConfig::Token {
                realm: server.realm(),
                service: server.service().into(),
                issuer: server.issuer().into(),
                cert_pem: server.cert_pem().to_vec(),
            },
        };
        self
    }

    /// Serves HTTPS with a certificate for 127.0.0.1/localhost signed by a
    /// fresh CA (see [`Registry::ca_pem`]).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Uses an existing storage root instead of a fresh one, e.g. another
    /// registry's [`Registry::storage_dir`] to serve images pushed over plain
    /// HTTP through a TLS twin (the fixture's pusher speaks plain HTTP only).
    pub fn storage_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.storage = Some(dir.into());
        self
    }

    /// Writes the config, spawns the registry and waits until it answers.
    pub fn start(self) -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("registry-fixture-")
            .tempdir()
            .context("creating the registry's temp dir")?;
        let storage = match self.storage {
            Some(s) => s,
            None => dir.path().join("storage"),
        };
        std::fs::create_dir_all(&storage)
            .with_context(|| format!("creating {}", storage.display()))?;
        let tls = if self.tls {
            Some(make_tls(dir.path())?)
        } else {
            None
        };
        let mut reg = Registry {
            config: dir.path().join("config.yml"),
            log: dir.path().join("registry.log"),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child: None,
            secret: hex::encode(random_bytes(16)?),
            auth: self.auth,
            tls,
            storage,
            dir,
            pid_slot: Arc::new(Mutex::new(None)),
        };
        reg.write_auth_files()?;
        // A port picked by the kernel can be taken before the child binds
        // it; try a few before giving up.
        let mut last = None;
        for _ in 0..5 {
            reg.addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            reg.write_config()?;
            match reg.spawn_and_wait() {
                Ok(()) => return Ok(reg),
                Err(e) if reg.logs().contains("address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no free port for the registry")))
    }
}

/// A running docker-registry; killed and reaped when dropped.
#[derive(Debug)]
pub struct Registry {
    dir: tempfile::TempDir,
    config: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
    secret: String,
    auth: AuthConfig,
    tls: Option<TlsFiles>,
    storage: PathBuf,
    /// The running child's pid, shared with kill switches. Reaping happens
    /// only under this lock, so a switch never signals a recycled pid.
    pid_slot: Arc<Mutex<Option<u32>>>,
}

impl Registry {
    /// Starts configuring an anonymous, plain-HTTP registry.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder {
            auth: AuthConfig::Anonymous,
            tls: false,
            storage: None,
        }
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` or `https://...` for TLS registries.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// PEM of the CA that signed the TLS certificate, for TLS registries.
    pub fn ca_pem(&self) -> Option<Vec<u8>> {
        self.tls.as_ref().map(|t| t.ca_pem.clone())
    }

    /// The storage root, to share it with another registry or inspect blobs.
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// The child's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the registry wrote to stdout/stderr so far (all starts).
    pub fn logs(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// SIGKILLs the registry and reaps it; a no-op if it is not running.
    pub fn kill(&mut self) {
        let mut slot = self.pid_slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        *slot = None;
    }

    /// A callback that SIGKILLs whatever child is running when it is called
    /// (without reaping; `kill`, `restart` or Drop reap it), for
    /// [`crate::Fault::CutBlobAfter`] and other threads that cannot borrow
    /// the registry.
    pub fn kill_switch(&self) -> Box<dyn Fn() + Send + Sync> {
        let slot = Arc::clone(&self.pid_slot);
        Box::new(move || {
            let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pid) = *guard {
                if let Ok(pid) = libc::pid_t::try_from(pid) {
                    // SAFETY: kill(2) takes plain integers and touches no
                    // memory; the pid is our unreaped child (reaping only
                    // happens under this lock), so it cannot be recycled.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                    wait_dead(pid);
                }
            }
        })
    }

    /// Kills the registry if running, then starts it again on the same port
    /// and storage and waits until it answers.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        // The port was ours a moment ago; Go listeners set SO_REUSEADDR, so
        // only a transient bind race with another test could fail this.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                Err(_)
                    if Instant::now() < deadline
                        && self.tail().contains("address already in use") =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the htpasswd file or the token root bundle the config names.
    fn write_auth_files(&self) -> Result<()> {
        match &self.auth {
            AuthConfig::Anonymous => {}
            AuthConfig::Basic { user, password } => {
                let line = run(
                    Command::new("htpasswd").args(["-Bbn", user, password]),
                    None,
                )
                .context("running htpasswd (apache2-utils)")?;
                std::fs::write(self.dir.path().join("htpasswd"), line)?;
            }
            AuthConfig::Token { cert_pem, .. } => {
                std::fs::write(self.dir.path().join("token-root.pem"), cert_pem)?;
            }
        }
        Ok(())
    }

    /// Renders the YAML config for the current address.
    fn write_config(&self) -> Result<()> {
        let mut y = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: \"{}\"\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: \"{}\"\n  secret: \"{}\"\n",
            self.storage.display(),
            self.addr,
            self.secret
        );
        if let Some(tls) = &self.tls {
            y.push_str(&format!(
                "  tls:\n    certificate: \"{}\"\n    key: \"{}\"\n",
                tls.cert.display(),
                tls.key.display()
            ));
        }
        match &self.auth {
            AuthConfig::Anonymous => {}
            AuthConfig::Basic { .. } => y.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: \"registry-fixture\"\n    path: \"{}\"\n",
                self.dir.path().join("htpasswd").display()
            )),
            AuthConfig::Token {
                realm,
                service,
                issuer,
                ..
            } => y.push_str(&format!(
                "auth:\n  token:\n    realm: \"{realm}\"\n    service: \"{service}\"\n    \
                 issuer: \"{issuer}\"\n    rootcertbundle: \"{}\"\n",
                self.dir.path().join("token-root.pem").display()
            )),
        }
        std::fs::write(&self.config, y).context("writing the registry config")
    }

    /// Spawns the child and polls until it answers, or fails with its log.
    fn spawn_and_wait(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context("opening the registry log")?;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut child = spawn_tied_to_process(cmd)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "docker-registry exited ({status}) before answering on {}: {}",
                    self.addr,
                    self.tail()
                );
            }
            if self.answers() {
                *self.pid_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(child.id());
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "docker-registry did not answer on {} within {READY_TIMEOUT:?}: {}",
                    self.addr,
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the registry is up: `/v2/` answers over plain HTTP, or, for
    /// TLS, the port accepts (distribution listens only once it is set up).
    fn answers(&self) -> bool {
        if self.tls.is_some() {
            return TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok();
        }
        matches!(
            http::send(&self.host(), "GET", "/v2/", &[], b""),
            Ok(r) if r.status == 200 || r.status == 401
        )
    }

    /// The last few KiB of the log, for error messages.
    fn tail(&self) -> String {
        let mut buf = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
            let _ = f.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).trim().to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A spawn request for the spawner thread and where to send the child.
type SpawnJob = (Command, Sender<std::io::Result<Child>>);

/// Spawns `cmd` from one long-lived thread with `PR_SET_PDEATHSIG`, so the
/// registry dies with the test process even when Drop never runs (a killed
/// `cargo test`). The signal fires when the *spawning thread* ends, hence a
/// dedicated thread that lives as long as the process rather than the
/// calling test's thread.
fn spawn_tied_to_process(mut cmd: Command) -> Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<SpawnJob>>> = OnceLock::new();
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl, which is async-signal-safe and touches no parent state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<SpawnJob>();
        let _ = std::thread::Builder::new()
            .name("registry-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = channel();
    spawner
        .lock()
        .map_err(|_| anyhow!("spawner lock poisoned"))?
        .send((cmd, reply_tx))
        .map_err(|_| anyhow!("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| anyhow!("the spawner thread is gone"))?
        .context("spawning docker-registry (is the docker-registry package installed?)")
}

/// Waits (up to 5 s) until unreaped child `pid` is a zombie: SIGKILL is delivered
/// asynchronously, and a caller that goes on at once must not still reach it.
fn wait_dead(pid: libc::pid_t) {
    let stat = format!("/proc/{pid}/stat");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let state = std::fs::read_to_string(&stat).ok().and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        });
        match state.as_deref().and_then(|s| s.chars().next()) {
            Some('Z') | Some('X') | None => return,
            _ => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
    }
}
