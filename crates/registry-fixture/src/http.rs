//! Just enough blocking HTTP/1.1 for the fixtures: parsing heads and bodies,
//! writing responses, a one-request-per-connection client, and an accept loop.
//! Every connection is `Connection: close`, which keeps framing trivial.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Socket timeout, so a stuck peer cannot pin a fixture thread forever.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Upper bound on a request or response head; ours are tiny.
const MAX_HEAD: usize = 64 * 1024;

/// Header list in arrival order.
pub(crate) type Headers = Vec<(String, String)>;

/// First value of a header, case-insensitively.
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A head: the start line (request or status line) and its headers.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// `GET /v2/ HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start: String,
    /// Headers in arrival order.
    pub headers: Headers,
}

/// Reads a head; `None` when the peer closed before sending anything.
pub(crate) fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<Head>> {
    let mut start = String::new();
    let mut total = 0;
    loop {
        start.clear();
        let n = r.read_line(&mut start)?;
        if n == 0 {
            return Ok(None);
        }
        total += n;
        // Tolerate stray blank lines before a request (RFC 9112 §2.2).
        if !start.trim().is_empty() {
            break;
        }
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line)?;
        total += n;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in head"));
        }
        if total > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too big"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some(Head {
        start: start.trim_end_matches(['\r', '\n']).to_string(),
        headers,
    }))
}

/// Whether the headers say the body is chunked.
pub(crate) fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// The declared Content-Length, if any and parseable.
pub(crate) fn content_length(headers: &[(String, String)]) -> Option<u64> {
    header(headers, "content-length").and_then(|v| v.trim().parse().ok())
}

/// Reads a body framed by the headers; `to_eof` reads an unframed body to EOF
/// (responses may do that, requests may not).
pub(crate) fn read_body<R: BufRead>(
    r: &mut R,
    headers: &[(String, String)],
    to_eof: bool,
) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if is_chunked(headers) {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let size_str = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers end with an empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = String::new();
            r.read_line(&mut crlf)?;
        }
    } else if let Some(n) = content_length(headers) {
        r.take(n).read_to_end(&mut body)?;
        if (body.len() as u64) < n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("body ended after {} of {n} bytes", body.len()),
            ));
        }
    } else if to_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// A request as the servers see it, body fully read.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// Path plus query, as sent.
    pub target: String,
    /// Headers in arrival order.
    pub headers: Headers,
    /// The de-chunked body.
    pub body: Vec<u8>,
}

impl Request {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// A header value, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Reads one request; `None` if the client connected and left.
pub(crate) fn read_request<R: BufRead>(r: &mut R) -> io::Result<Option<Request>> {
    let Some(head) = read_head(r)? else {
        return Ok(None);
    };
    let mut parts = head.start.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let body = read_body(r, &head.headers, false)?;
    Ok(Some(Request {
        method,
        target,
        headers: head.headers,
        body,
    }))
}

/// Reason phrase for the statuses the fixtures send.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Writes a complete response. Adds `Content-Length` unless the caller set
/// one (so a canned response can lie about it) and always `Connection: close`.
pub(crate) fn write_response<W: Write>(
    w: &mut W,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("connection") {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if header(headers, "content-length").is_none() && !is_chunked(headers) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Writes a distribution-style JSON error response.
pub(crate) fn write_error<W: Write>(
    w: &mut W,
    status: u16,
    code: &str,
    message: &str,
    extra: &[(String, String)],
) -> io::Result<()> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]});
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend_from_slice(extra);
    write_response(w, status, &headers, body.to_string().as_bytes())
}

/// A response read by the client, body fully buffered.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in arrival order.
    pub headers: Headers,
    /// The de-chunked body.
    pub body: Vec<u8>,
}

impl Response {
    /// A header value, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Parses the status code out of `HTTP/1.1 200 OK`.
pub(crate) fn status_of(start: &str) -> Option<u16> {
    start.split_whitespace().nth(1)?.parse().ok()
}

/// Splits `http://host:port/path?q` into host and target; other schemes are
/// refused because the fixtures speak plain HTTP only.
pub(crate) fn split_url(url: &str) -> Result<(String, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("only http:// URLs are supported by the fixture client: {url}");
    };
    Ok(match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    })
}

/// Connects with the fixture timeouts applied.
pub(crate) fn connect(host: &str) -> Result<TcpStream> {
    let stream = TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Sends one request on a fresh connection and reads the whole response.
pub(crate) fn send(
    host: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Response> {
    let mut stream = connect(host)?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    let resp = read_head(&mut reader)?.context("connection closed before a response")?;
    let status = status_of(&resp.start).context("bad status line")?;
    let body = if method == "HEAD" || status == 204 || status == 304 {
        Vec::new()
    } else {
        read_body(&mut reader, &resp.headers, true)?
    };
    Ok(Response {
        status,
        headers: resp.headers,
        body,
    })
}

/// Handler for one accepted connection.
pub(crate) type Handler = Arc<dyn Fn(TcpStream) + Send + Sync>;

/// An accept loop in a thread, one thread per connection; dropping it stops
/// accepting (in-flight connections finish on their own, bounded by timeouts).
pub(crate) struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `listener` with `handler` until dropped.
    pub(crate) fn start(listener: TcpListener, name: &str, handler: Handler) -> Result<Self> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let conn_name = format!("{name}-conn");
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                    let _ = stream.set_nodelay(true);
                    let h = Arc::clone(&handler);
                    // A failed spawn drops the connection, which the client sees.
                    let _ = std::thread::Builder::new()
                        .name(conn_name.clone())
                        .spawn(move || h(stream));
                }
            })
            .context("spawning server thread")?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_chunked_request() {
        let raw = b"PUT /x?a=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let req = read_request(&mut &raw[..]).unwrap().unwrap();
        assert_eq!(req.method, "PUT");
        assert_eq!(req.path(), "/x");
        assert_eq!(req.query(), Some("a=1"));
        assert_eq!(req.body, b"abcde");
    }

    #[test]
    fn short_body_is_an_error() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let mut r = &raw[..];
        let head = read_head(&mut r).unwrap().unwrap();
        assert!(read_body(&mut r, &head.headers, true).is_err());
    }
}
