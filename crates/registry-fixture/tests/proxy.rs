//! The fault-injecting proxy in front of a real registry.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{push_two_layer, raw, skopeo, skopeo_ok};
use registry_fixture::images::{Credentials, ImageSpec, Layer, MediaKind, Pusher, sha256_digest};
use registry_fixture::{Fault, Proxy, Registry};

fn blob_path(repo: &str, layer: &Layer) -> String {
    format!("/v2/{repo}/blobs/{}", layer.digest())
}

#[test]
fn counts_bytes_and_logs_requests_through_skopeo() {
    let reg = Registry::builder().start().unwrap();
    let proxy = Proxy::in_front_of(&reg).unwrap();
    // Pushing through the proxy exercises Location rewriting of uploads.
    let img = push_two_layer(
        &Pusher::new(proxy.host(), Credentials::None),
        "p/img",
        "v1",
        MediaKind::Oci,
    );
    proxy.reset_counters();

    let dir = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:v1", dir.path().join("l").display());
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/p/img:v1", proxy.host()),
        &dest,
    ]);
    let mut total = 0;
    for layer in &img.layers {
        assert_eq!(proxy.blob_bytes_served(layer.digest_hex()), layer.size());
        total += layer.size();
    }
    total += img.config_bytes.len() as u64;
    assert_eq!(proxy.total_blob_bytes(), total);
    let log = proxy.requests();
    let blob_gets = log
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/sha256:"))
        .count();
    assert_eq!(blob_gets, 3, "{log:?}");
    assert!(log.iter().all(|r| !r.had_authorization));
}

#[test]
fn corrupt_blob_makes_skopeo_fail_with_a_digest_error() {
    let reg = Registry::builder().start().unwrap();
    let img = push_two_layer(
        &Pusher::new(reg.host(), Credentials::None),
        "c",
        "v1",
        MediaKind::Oci,
    );
    let proxy = Proxy::in_front_of(&reg).unwrap();
    proxy.set_fault(Fault::CorruptBlob(img.layers[1].digest_hex().to_string()));
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:v1", dir.path().join("l").display());
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/c:v1", proxy.host()),
        &dest,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("digest"), "{err}");

    // Same length, different bytes.
    let r = raw(&proxy.host(), "GET", &blob_path("c", &img.layers[1]), &[]);
    assert_eq!(r.body.len() as u64, img.layers[1].size());
    assert_ne!(sha256_digest(&r.body), img.layers[1].digest());
}

#[test]
fn cut_blob_runs_callback_once_and_restart_recovers() {
    let mut reg = Registry::builder().start().unwrap();
    let img = push_two_layer(
        &Pusher::new(reg.host(), Credentials::None),
        "cut",
        "v1",
        MediaKind::Oci,
    );
    let proxy = Proxy::in_front_of(&reg).unwrap();
    let layer = &img.layers[1];
    let fired = Arc::new(AtomicBool::new(false));
    let (f2, kill) = (Arc::clone(&fired), reg.kill_switch());
    proxy.set_fault(Fault::CutBlobAfter {
        digest_hex: layer.digest_hex().to_string(),
        bytes: 1000,
        then: Some(Box::new(move || {
            f2.store(true, Ordering::SeqCst);
            kill();
        })),
    });
    let r = raw(&proxy.host(), "GET", &blob_path("cut", layer), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length").unwrap(),
        layer.size().to_string()
    );
    assert_eq!(r.body, &layer.bytes()[..1000]);
    assert!(fired.load(Ordering::SeqCst));
    assert_eq!(proxy.blob_bytes_served(layer.digest_hex()), 1000);
    // The registry is dead: the proxy answers 502.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(raw(&proxy.host(), "GET", "/v2/", &[]).status, 502);

    reg.restart().unwrap();
    // One-shot: a ranged resume now gets the rest intact.
    let r = raw(
        &proxy.host(),
        "GET",
        &blob_path("cut", layer),
        &[("Range", "bytes=1000-")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &layer.bytes()[1000..]);
    let last = proxy.requests().pop().unwrap();
    assert_eq!(last.range.as_deref(), Some("bytes=1000-"));
}

#[test]
fn fail_requests_then_recover() {
    let reg = Registry::builder().start().unwrap();
    let proxy = Proxy::in_front_of(&reg).unwrap();
    proxy.set_fault(Fault::FailRequests {
        status: 429,
        count: 2,
        retry_after: Some(1),
    });
    for _ in 0..2 {
        let r = raw(&proxy.host(), "GET", "/v2/", &[]);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(String::from_utf8_lossy(&r.body).contains("TOOMANYREQUESTS"));
    }
    assert_eq!(raw(&proxy.host(), "GET", "/v2/", &[]).status, 200);
}

#[test]
fn lie_content_length_and_throttle() {
    let reg = Registry::builder().start().unwrap();
    let layer = Layer::random_files(5, 1, 100_000).unwrap();
    let spec = ImageSpec::new(vec![layer.clone()]);
    Pusher::new(reg.host(), Credentials::None)
        .push_image("lie", "v1", &spec)
        .unwrap();
    let proxy = Proxy::in_front_of(&reg).unwrap();

    proxy.set_fault(Fault::LieContentLength {
        digest_hex: layer.digest_hex().to_string(),
    });
    let r = raw(&proxy.host(), "GET", &blob_path("lie", &layer), &[]);
    let declared: u64 = r.header("content-length").unwrap().parse().unwrap();
    assert!(declared > layer.size());
    assert_eq!(r.body, layer.bytes());

    proxy.set_fault(Fault::Throttle {
        bytes_per_sec: 200_000,
    });
    let t = Instant::now();
    let r = raw(&proxy.host(), "GET", &blob_path("lie", &layer), &[]);
    assert_eq!(r.body, layer.bytes());
    let expected = layer.size() as f64 / 200_000.0;
    assert!(
        t.elapsed().as_secs_f64() >= expected * 0.8,
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn redirect_blobs_to_another_origin_without_authorization() {
    let reg = Registry::builder().start().unwrap();
    let img = push_two_layer(
        &Pusher::new(reg.host(), Credentials::None),
        "r/x",
        "v1",
        MediaKind::Docker,
    );
    let proxy = Proxy::in_front_of(&reg).unwrap();
    proxy.set_fault(Fault::RedirectBlobs);
    assert_ne!(proxy.storage_host(), proxy.host());

    let layer = &img.layers[0];
    let r = raw(
        &proxy.host(),
        "GET",
        &blob_path("r/x", layer),
        &[("Authorization", "Bearer secret")],
    );
    assert_eq!(r.status, 307);
    let location = r.header("location").unwrap();
    let rest = location
        .strip_prefix(&format!("http://{}", proxy.storage_host()))
        .unwrap();
    let r = raw(&proxy.storage_host(), "GET", rest, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, layer.bytes());
    let storage: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/_storage/"))
        .collect();
    assert_eq!(storage.len(), 1);
    assert!(!storage[0].had_authorization);

    // A real client follows the cross-origin redirect.
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:v1", dir.path().join("l").display());
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/r/x:v1", proxy.host()),
        &dest,
    ]);
    assert!(proxy.blob_bytes_served(layer.digest_hex()) >= 2 * layer.size());
}
