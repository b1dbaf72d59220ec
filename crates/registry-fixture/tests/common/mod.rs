//! Helpers shared by the integration tests: running skopeo and a raw HTTP
//! client independent of the crate's own, so the tests check the fixture
//! from the outside.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

use registry_fixture::images::{ImageSpec, Layer, MediaKind, PushedImage, Pusher};

/// Runs skopeo with a throwaway policy and no ambient credentials.
pub fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .output()
        .expect("running skopeo")
}

/// Asserts skopeo succeeded and returns its stdout.
pub fn skopeo_ok(args: &[&str]) -> String {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A raw response: status, headers (lowercased names), body.
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; the body is whatever
/// arrived before EOF (no framing), so truncation stays visible.
pub fn raw(host: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> Raw {
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&all[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: all[split + 4..].to_vec(),
    }
}

/// Pushes a two-layer image and returns what was pushed.
pub fn push_two_layer(pusher: &Pusher, repo: &str, tag: &str, media: MediaKind) -> PushedImage {
    let mut spec = ImageSpec::new(vec![
        Layer::random_files(1, 3, 20_000).unwrap(),
        Layer::random_files(2, 2, 50_000).unwrap(),
    ]);
    spec.media = media;
    pusher.push_image(repo, tag, &spec).unwrap()
}

/// The `Digest` skopeo inspect reports.
pub fn inspect_digest(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}
