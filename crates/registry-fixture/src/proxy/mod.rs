//! A reverse proxy in front of a plain-HTTP registry that counts blob bytes,
//! logs requests and injects faults the registry itself cannot produce.

mod forward;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result, bail};

use crate::http::Server;
use crate::registry::Registry;
use forward::{serve_main, serve_storage};

/// Callback run when a [`Fault::CutBlobAfter`] fires.
pub type Callback = Box<dyn Fn() + Send + Sync>;

/// What the proxy does wrong; set at any time with [`ProxyHandle::set_fault`].
pub enum Fault {
    /// Forward everything faithfully.
    None,
    /// Flip the middle byte of every GET body of blob `sha256:<hex>` (length
    /// kept), so the client sees a digest mismatch.
    CorruptBlob(String),
    /// Send the headers and the first `bytes` body bytes of blob `<hex>`,
    /// then run `then` (e.g. kill the registry) and close. One-shot: the
    /// fault resets to `None` once it fired.
    CutBlobAfter {
        /// Hex of the blob's sha256.
        digest_hex: String,
        /// Body bytes sent before closing.
        bytes: u64,
        /// Run after the connection closed.
        then: Option<Callback>,
    },
    /// Answer the next `count` requests with `status` without contacting
    /// upstream, then go back to `None`.
    FailRequests {
        /// E.g. 503 or 429.
        status: u16,
        /// How many requests fail.
        count: usize,
        /// Optional `Retry-After` seconds.
        retry_after: Option<u32>,
    },
    /// For blob `<hex>`, declare a Content-Length larger than the body and
    /// close after the real body.
    LieContentLength {
        /// Hex of the blob's sha256.
        digest_hex: String,
    },
    /// Pace every blob body to about this rate.
    Throttle {
        /// Bytes per second.
        bytes_per_sec: u64,
    },
    /// Answer blob GETs with `307` to the proxy's second listener
    /// ([`Proxy::storage_host`], another origin), which serves the blob from
    /// upstream without credentials, like S3 behind Docker Hub.
    RedirectBlobs,
}

impl std::fmt::Debug for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::None => write!(f, "None"),
            Fault::CorruptBlob(h) => write!(f, "CorruptBlob({h})"),
            Fault::CutBlobAfter {
                digest_hex, bytes, ..
            } => write!(f, "CutBlobAfter({digest_hex}, {bytes})"),
            Fault::FailRequests {
                status,
                count,
                retry_after,
            } => write!(f, "FailRequests({status}, {count}, {retry_after:?})"),
            Fault::LieContentLength { digest_hex } => write!(f, "LieContentLength({digest_hex})"),
            Fault::Throttle { bytes_per_sec } => write!(f, "Throttle({bytes_per_sec})"),
            Fault::RedirectBlobs => write!(f, "RedirectBlobs"),
        }
    }
}

/// One request the proxy saw (either listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLog {
    /// The method.
    pub method: String,
    /// The path without query (`/_storage/...` for redirected blob fetches).
    pub path: String,
    /// The `Range` header, if sent.
    pub range: Option<String>,
    /// Whether an `Authorization` header came with it.
    pub had_authorization: bool,
}

/// Shared state behind every connection and handle.
struct State {
    upstream: String,
    host: String,
    storage_host: String,
    fault: Mutex<Fault>,
    per_blob: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    log: Mutex<Vec<RequestLog>>,
}

/// A cloneable handle to a running proxy, for fault callbacks and threads.
#[derive(Clone)]
pub struct ProxyHandle(Arc<State>);

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyHandle({} -> {})", self.0.host, self.0.upstream)
    }
}

/// A running proxy; both listeners stop when it is dropped.
#[derive(Debug)]
pub struct Proxy {
    handle: ProxyHandle,
    _main: ServerGuard,
    _storage: ServerGuard,
}

/// Wraps [`Server`] so `Proxy` can derive Debug.
struct ServerGuard(#[allow(dead_code)] Server);

impl std::fmt::Debug for ServerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server({})", self.0.addr())
    }
}

/// Locks a mutex, surviving poisoning (a panicking test thread must not
/// break the fixture for the assertions that follow).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proxy {
    /// Proxies to `upstream` (`host:port`, plain HTTP).
    pub fn start(upstream: &str) -> Result<Proxy> {
        let main = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        // A different loopback address makes the redirect cross-host, not
        // just cross-port; fall back to another port if 127.0.0.2 is absent.
        let storage = TcpListener::bind("127.0.0.2:0")
            .or_else(|_| TcpListener::bind("127.0.0.1:0"))
            .context("binding the proxy's storage listener")?;
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            host: main.local_addr()?.to_string(),
            storage_host: storage.local_addr()?.to_string(),
            fault: Mutex::new(Fault::None),
            per_blob: Mutex::new(HashMap::new()),
            total: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        });
        let s1 = Arc::clone(&state);
        let s2 = Arc::clone(&state);
        let main = Server::start(main, "proxy", Arc::new(move |c| serve_main(&s1, c)))?;
        let storage = Server::start(
            storage,
            "proxy-storage",
            Arc::new(move |c| serve_storage(&s2, c)),
        )?;
        Ok(Proxy {
            handle: ProxyHandle(state),
            _main: ServerGuard(main),
            _storage: ServerGuard(storage),
        })
    }

    /// Proxies to a plain-HTTP [`Registry`].
    pub fn in_front_of(registry: &Registry) -> Result<Proxy> {
        if registry.is_tls() {
            bail!("the proxy speaks plain HTTP to its upstream; use a non-TLS registry");
        }
        Self::start(&registry.host())
    }

    /// A cloneable handle sharing this proxy's faults and counters.
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// `127.0.0.1:PORT` of the proxy, to use as the registry host.
    pub fn host(&self) -> String {
        self.handle.host()
    }

    /// `HOST:PORT` of the second listener that serves redirected blobs.
    pub fn storage_host(&self) -> String {
        self.handle.0.storage_host.clone()
    }

    /// Replaces the current fault.
    pub fn set_fault(&self, fault: Fault) {
        self.handle.set_fault(fault);
    }

    /// Blob body bytes sent to clients for `sha256:<hex>` (GET bodies framed
    /// by Content-Length, which distribution always sends for blobs).
    pub fn blob_bytes_served(&self, digest_hex: &str) -> u64 {
        self.handle.blob_bytes_served(digest_hex)
    }

    /// Blob body bytes sent to clients, all blobs.
    pub fn total_blob_bytes(&self) -> u64 {
        self.handle.total_blob_bytes()
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<RequestLog> {
        self.handle.requests()
    }

    /// Forgets counters and the request log (the fault stays).
    pub fn reset_counters(&self) {
        self.handle.reset_counters();
    }
}

impl ProxyHandle {
    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        self.0.host.clone()
    }

    /// Replaces the current fault.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.0.fault) = fault;
    }

    /// Blob body bytes sent to clients for `sha256:<hex>` (GET bodies framed
    /// by Content-Length, which distribution always sends for blobs).
    pub fn blob_bytes_served(&self, digest_hex: &str) -> u64 {
        let hex = digest_hex.trim_start_matches("sha256:");
        lock(&self.0.per_blob).get(hex).copied().unwrap_or(0)
    }

    /// Blob body bytes sent to clients, all blobs.
    pub fn total_blob_bytes(&self) -> u64 {
        self.0.total.load(Ordering::SeqCst)
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<RequestLog> {
        lock(&self.0.log).clone()
    }

    /// Forgets counters and the request log (the fault stays).
    pub fn reset_counters(&self) {
        lock(&self.0.per_blob).clear();
        self.0.total.store(0, Ordering::SeqCst);
        lock(&self.0.log).clear();
    }
}
