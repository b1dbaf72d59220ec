//! A canned-response registry for what docker-registry refuses to serve:
//! schema-1 manifests, huge manifests or indexes, lying Content-Lengths.

use std::collections::HashMap;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::http::{self, Server};
use crate::proxy::RequestLog;

/// One canned answer.
#[derive(Debug, Clone)]
pub struct Canned {
    /// Status code.
    pub status: u16,
    /// Headers sent as given; a `Content-Length` here is sent verbatim even
    /// if it disagrees with the body (the connection closes after the body).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Canned {
    /// A response with a body and no headers yet.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Routes keyed by (method, path without query).
type Routes = HashMap<(String, String), Canned>;

/// Shared state of a fake.
#[derive(Default)]
struct State {
    routes: Mutex<Routes>,
    log: Mutex<Vec<RequestLog>>,
}

/// A running fake registry; stops when dropped.
pub struct FakeRegistry {
    server: Server,
    state: Arc<State>,
}

impl std::fmt::Debug for FakeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FakeRegistry({})", self.server.addr())
    }
}

/// Locks a mutex, surviving poisoning.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeRegistry {
    /// Starts an empty fake on 127.0.0.1 (`GET /v2/` answers 200).
    pub fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the fake registry")?;
        let state = Arc::new(State::default());
        let s = Arc::clone(&state);
        let server = Server::start(listener, "fake-registry", Arc::new(move |c| serve(&s, c)))?;
        Ok(Self { server, state })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// Answers `method path` (path without query) with `response`.
    pub fn set(&self, method: &str, path: &str, response: Canned) {
        lock(&self.state.routes).insert((method.to_uppercase(), path.to_string()), response);
    }

    /// Removes a route.
    pub fn remove(&self, method: &str, path: &str) {
        lock(&self.state.routes).remove(&(method.to_uppercase(), path.to_string()));
    }

    /// Serves `bytes` as manifest `repo:reference` with `media_type` (GET and
    /// HEAD), and under its digest too; returns that `sha256:` digest.
    pub fn manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let canned = Canned::new(200, bytes)
            .header("Content-Type", media_type)
            .header("Docker-Content-Digest", &digest);
        for r in [reference, digest.as_str()] {
            self.set("GET", &format!("/v2/{repo}/manifests/{r}"), canned.clone());
        }
        digest
    }

    /// Serves `bytes` as a blob of `repo`; returns its `sha256:` digest.
    pub fn blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let canned = Canned::new(200, bytes)
            .header("Content-Type", "application/octet-stream")
            .header("Docker-Content-Digest", &digest);
        self.set("GET", &format!("/v2/{repo}/blobs/{digest}"), canned);
        digest
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<RequestLog> {
        lock(&self.state.log).clone()
    }
}

/// `sha256:<hex>` of `bytes`.
fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Answers one connection from the routes.
fn serve(state: &State, stream: TcpStream) {
    let mut reader = BufReader::new(&stream);
    let Ok(Some(req)) = http::read_request(&mut reader) else {
        return;
    };
    lock(&state.log).push(RequestLog {
        method: req.method.clone(),
        path: req.path().to_string(),
        range: req.header("range").map(String::from),
        had_authorization: req.header("authorization").is_some(),
    });
    let path = req.path().to_string();
    let head = req.method == "HEAD";
    let found = {
        let routes = lock(&state.routes);
        routes
            .get(&(req.method.clone(), path.clone()))
            // HEAD falls back to the GET route without its body.
            .or_else(|| {
                head.then(|| routes.get(&("GET".into(), path.clone())))
                    .flatten()
            })
            .cloned()
    };
    let mut out = &stream;
    let api = (
        "Docker-Distribution-Api-Version".to_string(),
        "registry/2.0".to_string(),
    );
    match found {
        Some(c) => {
            let mut headers = c.headers.clone();
            headers.push(api);
            if head && http::header(&headers, "content-length").is_none() {
                headers.push(("Content-Length".into(), c.body.len().to_string()));
            }
            let body: &[u8] = if head { b"" } else { &c.body };
            let _ = http::write_response(&mut out, c.status, &headers, body);
        }
        None if path == "/v2/" || path == "/v2" => {
            let headers = vec![api, ("Content-Type".into(), "application/json".into())];
            let _ = http::write_response(&mut out, 200, &headers, b"{}");
        }
        None if path.contains("/blobs/") => {
            let _ = http::write_error(
                &mut out,
                404,
                "BLOB_UNKNOWN",
                "blob unknown to registry",
                &[api],
            );
        }
        None => {
            let _ = http::write_error(
                &mut out,
                404,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
                &[api],
            );
        }
    }
}
