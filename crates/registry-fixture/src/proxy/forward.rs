//! The proxy's connection handling: forwarding to upstream, redirects to
//! the storage listener, and blob bodies mangled by the current fault.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Callback, Fault, RequestLog, State, lock};
use crate::http::{self, Request};

/// How one blob body is to be mangled, decided before the head is sent.
enum Plan {
    Faithful,
    Corrupt,
    Cut(u64, Option<Callback>, String),
    Lie,
    Throttle(u64),
}

impl State {
    /// Appends to the request log.
    fn record(&self, req: &Request) {
        lock(&self.log).push(RequestLog {
            method: req.method.clone(),
            path: req.path().to_string(),
            range: req.header("range").map(String::from),
            had_authorization: req.header("authorization").is_some(),
        });
    }

    /// Adds served body bytes of a blob.
    fn count(&self, hex: &str, n: u64) {
        *lock(&self.per_blob).entry(hex.to_string()).or_default() += n;
        self.total.fetch_add(n, Ordering::SeqCst);
    }

    /// The plan for a GET of blob `hex`; takes one-shot faults.
    fn plan_for(&self, hex: &str) -> Plan {
        let mut fault = lock(&self.fault);
        match &*fault {
            Fault::CorruptBlob(h) if h == hex => Plan::Corrupt,
            Fault::LieContentLength { digest_hex } if digest_hex == hex => Plan::Lie,
            Fault::Throttle { bytes_per_sec } => Plan::Throttle((*bytes_per_sec).max(1)),
            Fault::CutBlobAfter { digest_hex, .. } if digest_hex == hex => {
                match std::mem::replace(&mut *fault, Fault::None) {
                    Fault::CutBlobAfter {
                        digest_hex,
                        bytes,
                        then,
                    } => Plan::Cut(bytes, then, digest_hex),
                    other => {
                        *fault = other;
                        Plan::Faithful
                    }
                }
            }
            _ => Plan::Faithful,
        }
    }

    /// Consumes one failure of `FailRequests`, if that is the fault.
    fn take_failure(&self) -> Option<(u16, Option<u32>)> {
        let mut fault = lock(&self.fault);
        if let Fault::FailRequests {
            status,
            count,
            retry_after,
        } = &mut *fault
        {
            if *count > 0 {
                *count -= 1;
                let out = (*status, *retry_after);
                if *count == 0 {
                    *fault = Fault::None;
                }
                return Some(out);
            }
        }
        None
    }
}

/// `(repo, hex)` of `/v2/<repo>/blobs/sha256:<hex>`.
fn blob_target(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/v2/")?;
    let (repo, hex) = rest.rsplit_once("/blobs/sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (repo.to_string(), hex.to_string()))
}

/// Handles a connection on the main listener.
pub(super) fn serve_main(state: &State, stream: TcpStream) {
    let mut reader = BufReader::new(&stream);
    let Ok(Some(req)) = http::read_request(&mut reader) else {
        return;
    };
    state.record(&req);
    let mut out = &stream;
    if let Some((status, retry_after)) = state.take_failure() {
        let extra: Vec<(String, String)> = retry_after
            .map(|s| vec![("Retry-After".to_string(), s.to_string())])
            .unwrap_or_default();
        let code = if status == 429 {
            "TOOMANYREQUESTS"
        } else {
            "UNAVAILABLE"
        };
        let _ = http::write_error(&mut out, status, code, "injected failure", &extra);
        return;
    }
    let blob = blob_target(req.path());
    let is_get = req.method == "GET";
    if let (true, Some((repo, hex))) = (is_get, &blob) {
        if matches!(*lock(&state.fault), Fault::RedirectBlobs) {
            let location = format!(
                "http://{}/_storage/sha256:{hex}?repo={}",
                state.storage_host,
                crate::util::percent_encode(repo)
            );
            let headers = vec![
                ("Location".to_string(), location),
                (
                    "Docker-Distribution-Api-Version".to_string(),
                    "registry/2.0".to_string(),
                ),
            ];
            let _ = http::write_response(&mut out, 307, &headers, b"");
            return;
        }
    }
    let plan = match (is_get, &blob) {
        (true, Some((_, hex))) => state.plan_for(hex),
        _ => Plan::Faithful,
    };
    let hex = blob.map(|(_, h)| h);
    let target = req.target.clone();
    let _ = forward(state, &stream, &req, &target, true, hex.as_deref(), plan);
}

/// Handles a connection on the storage listener (redirect targets).
pub(super) fn serve_storage(state: &State, stream: TcpStream) {
    let mut reader = BufReader::new(&stream);
    let Ok(Some(req)) = http::read_request(&mut reader) else {
        return;
    };
    state.record(&req);
    let mut out = &stream;
    let hex = req
        .path()
        .strip_prefix("/_storage/sha256:")
        .map(String::from);
    let repo = req.query().and_then(|q| {
        crate::util::parse_query(q)
            .into_iter()
            .find(|(k, _)| k == "repo")
            .map(|(_, v)| v)
    });
    let (Some(hex), Some(repo)) = (hex, repo) else {
        let _ = http::write_error(&mut out, 404, "BLOB_UNKNOWN", "no such storage object", &[]);
        return;
    };
    let target = format!("/v2/{repo}/blobs/sha256:{hex}");
    let _ = forward(
        state,
        &stream,
        &req,
        &target,
        false,
        Some(&hex),
        Plan::Faithful,
    );
}

/// Hop-by-hop or framing headers the proxy sets itself.
fn is_managed(name: &str) -> bool {
    [
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "content-length",
        "transfer-encoding",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Sends `req` upstream and reads the response head.
fn send_upstream(
    state: &State,
    req: &Request,
    target: &str,
    keep_auth: bool,
) -> io::Result<(BufReader<TcpStream>, http::Head)> {
    let mut up = http::connect(&state.upstream).map_err(io::Error::other)?;
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: {}\r\n",
        req.method, state.upstream
    );
    for (k, v) in &req.headers {
        if is_managed(k) || (!keep_auth && k.eq_ignore_ascii_case("authorization")) {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !req.body.is_empty() || matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    up.flush()?;
    let mut up_reader = BufReader::new(up);
    let resp = http::read_head(&mut up_reader)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "upstream closed"))?;
    Ok((up_reader, resp))
}

/// Sends `req` upstream as `target` and streams the answer back to
/// `client`, applying `plan` to a blob body. An upstream that cannot be
/// reached becomes a 502; later errors just end the connection.
fn forward(
    state: &State,
    client: &TcpStream,
    req: &Request,
    target: &str,
    keep_auth: bool,
    blob_hex: Option<&str>,
    plan: Plan,
) -> io::Result<()> {
    let (mut up_reader, resp) = match send_upstream(state, req, target, keep_auth) {
        Ok(x) => x,
        Err(e) => {
            let mut w = client;
            return http::write_error(&mut w, 502, "UNKNOWN", &format!("proxy: {e}"), &[]);
        }
    };
    let status = http::status_of(&resp.start).unwrap_or(502);
    let declared = http::content_length(&resp.headers);
    let chunked = http::is_chunked(&resp.headers);
    let lie = matches!(plan, Plan::Lie) && declared.is_some();
    let mut out_head = format!("{}\r\n", resp.start);
    for (k, v) in &resp.headers {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        let v = if k.eq_ignore_ascii_case("location") {
            v.replace(
                &format!("//{}", state.upstream),
                &format!("//{}", state.host),
            )
        } else if lie && k.eq_ignore_ascii_case("content-length") {
            (declared.unwrap_or(0) + 1000).to_string()
        } else {
            v.clone()
        };
        out_head.push_str(&format!("{k}: {v}\r\n"));
    }
    out_head.push_str("Connection: close\r\n\r\n");
    let mut client_w = client;
    client_w.write_all(out_head.as_bytes())?;

    let has_body = req.method != "HEAD" && status >= 200 && status != 204 && status != 304;
    match blob_hex {
        Some(hex) if has_body && !chunked && req.method == "GET" => {
            pump_blob(state, client, &mut up_reader, hex, declared, plan)
        }
        _ => {
            if has_body {
                io::copy(&mut up_reader, &mut client_w)?;
            }
            client_w.flush()
        }
    }
}

/// Copies a blob body to the client under `plan`, counting what was sent.
fn pump_blob<R: Read>(
    state: &State,
    client: &TcpStream,
    up: &mut R,
    hex: &str,
    declared: Option<u64>,
    mut plan: Plan,
) -> io::Result<()> {
    let mut w = client;
    let corrupt_at = declared.unwrap_or(0) / 2;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = up.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &mut buf[..n];
        match &mut plan {
            Plan::Corrupt if (sent..sent + n as u64).contains(&corrupt_at) => {
                chunk[(corrupt_at - sent) as usize] ^= 0xff;
            }
            Plan::Cut(limit, then, _) if sent + n as u64 >= *limit => {
                let keep = (*limit - sent) as usize;
                w.write_all(&chunk[..keep])?;
                w.flush()?;
                state.count(hex, keep as u64);
                // The callback first: a client that sees the cut and retries at once must
                // find what the callback did (a killed registry) already done.
                if let Some(cb) = then.take() {
                    cb();
                }
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            _ => {}
        }
        if let Plan::Throttle(bps) = plan {
            // Small slices so the pace is smooth and a kill lands mid-body.
            let slice = ((bps / 50).max(1) as usize).min(n);
            for part in chunk.chunks(slice) {
                w.write_all(part)?;
                sent += part.len() as u64;
                state.count(hex, part.len() as u64);
                let due = Duration::from_secs_f64(sent as f64 / bps as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            continue;
        }
        w.write_all(chunk)?;
        sent += n as u64;
        state.count(hex, n as u64);
    }
    w.flush()?;
    if matches!(plan, Plan::Lie) {
        let _ = client.shutdown(Shutdown::Both);
    }
    if let Plan::Cut(bytes, then, digest_hex) = plan {
        // The body was shorter than the cut point: nothing was cut, so
        // re-arm the fault for the next fetch of this blob.
        state.set_if_none(Fault::CutBlobAfter {
            digest_hex,
            bytes,
            then,
        });
    }
    Ok(())
}

impl State {
    /// Restores a fault unless the test set another one meanwhile.
    fn set_if_none(&self, fault: Fault) {
        let mut f = lock(&self.fault);
        if matches!(*f, Fault::None) {
            *f = fault;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_blob_paths() {
        let hex = "a".repeat(64);
        assert_eq!(
            blob_target(&format!("/v2/a/b/blobs/sha256:{hex}")),
            Some(("a/b".to_string(), hex.clone()))
        );
        assert_eq!(blob_target("/v2/a/blobs/uploads/xyz"), None);
        assert_eq!(blob_target("/v2/a/manifests/latest"), None);
    }
}
