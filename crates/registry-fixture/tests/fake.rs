//! The canned-response fake registry.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::raw;
use registry_fixture::{Canned, FakeRegistry};

#[test]
fn serves_canned_routes_and_distribution_style_404s() {
    let fake = FakeRegistry::start().unwrap();
    let host = fake.host();
    assert_eq!(raw(&host, "GET", "/v2/", &[]).status, 200);

    let schema1 = br#"{"schemaVersion":1,"name":"old","tag":"v1","fsLayers":[],"signatures":[]}"#;
    let digest = fake.manifest(
        "old",
        "v1",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        schema1,
    );
    for reference in ["v1", digest.as_str()] {
        let r = raw(&host, "GET", &format!("/v2/old/manifests/{reference}"), &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, schema1);
        assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    }
    let head = raw(&host, "HEAD", "/v2/old/manifests/v1", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(schema1.len().to_string().as_str())
    );
    assert!(head.body.is_empty());

    let missing = raw(&host, "GET", "/v2/old/manifests/nope", &[]);
    assert_eq!(missing.status, 404);
    let v: serde_json::Value = serde_json::from_slice(&missing.body).unwrap();
    assert_eq!(v["errors"][0]["code"], "MANIFEST_UNKNOWN");

    // A lying Content-Length goes out verbatim.
    fake.set(
        "GET",
        "/v2/old/blobs/sha256:abc",
        Canned::new(200, "short").header("Content-Length", "100"),
    );
    let r = raw(&host, "GET", "/v2/old/blobs/sha256:abc?x=1", &[]);
    assert_eq!(r.header("content-length"), Some("100"));
    assert_eq!(r.body, b"short");

    // Big bodies are fine.
    let big = vec![b' '; 10 << 20];
    fake.manifest(
        "big",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &big,
    );
    assert_eq!(
        raw(&host, "GET", "/v2/big/manifests/v1", &[]).body.len(),
        big.len()
    );
    assert_eq!(fake.requests().len(), 7);
}
