//! What goes wrong between a registry and the store: connections cut mid-blob (and resumed
//! with `Range`), corrupted and lying bodies, 5xx and 429 answers, documents a registry
//! should never send, and a full disk. Nothing of a failed pull may become visible.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use registry_fixture::images::{ImageSpec, Layer, MediaKind, PushedImage};
use registry_fixture::{Canned, FakeRegistry, Fault, Proxy, Registry};
use serde_json::json;
use support::{Home, assert_err_contains, assert_pulled, client, expect_err, layer, push};

/// Two small layers and a large incompressible one on top; pushed as `repo:v1`.
fn push_with_big_layer(reg: &Registry, repo: &str, seed: u64, big_bytes: usize) -> PushedImage {
    let layers = vec![
        layer(seed, 1, 10_000),
        layer(seed + 1, 1, 10_000),
        layer(seed + 2, 1, big_bytes),
    ];
    push(&reg.host(), repo, "v1", layers, MediaKind::Oci)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_cut_off_mid_blob_resumes_where_it_broke() {
    let mut reg = Registry::builder().start().unwrap();
    let img = push_with_big_layer(&reg, "resume", 3000, 4_000_000);
    let big = img.layers[2].clone();
    let cut = big.size() / 2;
    let proxy = Proxy::in_front_of(&reg).unwrap();
    proxy.set_fault(Fault::CutBlobAfter {
        digest_hex: big.digest_hex().to_string(),
        bytes: cut,
        then: Some(reg.kill_switch()),
    });
    let home = Home::new();
    let client = client();
    let reference = format!("{}/resume:v1", proxy.host());

    let err = expect_err(home.pull(&client, &reference).await);
    // The registry is gone: the error names the layer being fetched and where from.
    assert_err_contains(&err, &["layer ", &proxy.host()]);
    home.assert_nothing_visible(&big);
    assert!(proxy.blob_bytes_served(big.digest_hex()) >= cut);

    reg.restart().unwrap();
    proxy.reset_counters();
    let pulled = home.pull(&client, &reference).await.unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
    let resumed = proxy.blob_bytes_served(big.digest_hex());
    assert_eq!(
        resumed,
        big.size() - cut,
        "only the rest of the layer comes again"
    );
    assert!(proxy.total_blob_bytes() < big.size());
    let ranges: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(big.digest_hex()))
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges, [Some(format!("bytes={cut}-"))]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_layer_is_a_digest_mismatch_and_never_stored() {
    let reg = Registry::builder().start().unwrap();
    let layers: Vec<_> = (0..3).map(|i| layer(3100 + i, 1, 200_000)).collect();
    let img = push(&reg.host(), "corrupt", "v1", layers, MediaKind::Oci);
    let bad = img.layers[1].clone();
    let proxy = Proxy::in_front_of(&reg).unwrap();
    proxy.set_fault(Fault::CorruptBlob(bad.digest_hex().to_string()));
    let home = Home::new();
    let reference = format!("{}/corrupt:v1", proxy.host());
    let err = expect_err(home.pull(&client(), &reference).await);
    assert_err_contains(
        &err,
        &["digest mismatch", "layer 2/3", bad.digest(), "corrupt:v1"],
    );
    home.assert_nothing_visible(&bad);
    // The corrupt bytes are not kept to resume from either.
    let partial = home
        .store
        .partial_dir()
        .join(format!("sha256-{}", bad.digest_hex()));
    assert!(!partial.exists(), "{} kept", partial.display());

    // Once the proxy behaves, the same store pulls the image.
    proxy.set_fault(Fault::None);
    let pulled = home.pull(&client(), &reference).await.unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_and_429_gives_up_after_the_attempts() {
    let reg = Registry::builder().start().unwrap();
    let img = push(
        &reg.host(),
        "busy",
        "v1",
        support::three_layers(3200),
        MediaKind::Oci,
    );
    let other = push(
        &reg.host(),
        "busy",
        "v2",
        vec![layer(3210, 1, 1000)],
        MediaKind::Oci,
    );
    let proxy = Proxy::in_front_of(&reg).unwrap();
    let client = client();
    let home = Home::new();

    // Two 503s (the first ping and its retry): the third try works.
    proxy.set_fault(Fault::FailRequests {
        status: 503,
        count: 2,
        retry_after: None,
    });
    let reference = format!("{}/busy:v1", proxy.host());
    let pulled = home.pull(&client, &reference).await.unwrap();
    assert_pulled(&home, &pulled, &img, &reference);

    // A 503 with Retry-After is waited out.
    proxy.set_fault(Fault::FailRequests {
        status: 503,
        count: 1,
        retry_after: Some(1),
    });
    let started = Instant::now();
    let reference = format!("{}/busy:v2", proxy.host());
    let pulled = home.pull(&client, &reference).await.unwrap();
    assert_pulled(&home, &pulled, &other, &reference);
    assert!(started.elapsed() >= Duration::from_secs(1));

    // Endless 429s: as many tries as the policy says, then an error that says 429.
    proxy.set_fault(Fault::FailRequests {
        status: 429,
        count: 100,
        retry_after: None,
    });
    proxy.reset_counters();
    let home = Home::new();
    let err = expect_err(home.pull(&client, &reference).await);
    assert_err_contains(&err, &["429", "manifest v2", &proxy.host()]);
    assert_eq!(proxy.requests().len(), 3, "{:?}", proxy.requests());
    assert_eq!(home.records(), 0);

    // A client that has not pinged yet reports the 429 of the ping.
    let err = expect_err(home.pull(&support::client(), &reference).await);
    assert_err_contains(&err, &["429", &proxy.host(), "after 3 tries"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lying_content_length_is_refused() {
    let reg = Registry::builder().start().unwrap();
    let img = push_with_big_layer(&reg, "liar", 3300, 500_000);
    let big = img.layers[2].clone();
    let proxy = Proxy::in_front_of(&reg).unwrap();
    proxy.set_fault(Fault::LieContentLength {
        digest_hex: big.digest_hex().to_string(),
    });
    let home = Home::new();
    let err = expect_err(
        home.pull(&client(), &format!("{}/liar:v1", proxy.host()))
            .await,
    );
    assert_err_contains(
        &err,
        &[
            &format!("announces {} bytes", big.size() + 1000),
            "layer 3/3",
            &format!("the blob has {}", big.size()),
        ],
    );
    home.assert_nothing_visible(&big);
}

/// A fake serving `manifest` (of `media_type`) as `repo:v1`.
fn fake_with_manifest(repo: &str, media_type: &str, manifest: &[u8]) -> FakeRegistry {
    let fake = FakeRegistry::start().unwrap();
    fake.manifest(repo, "v1", media_type, manifest);
    fake
}

async fn pull_fake(fake: &FakeRegistry, repo: &str) -> registry::Error {
    let home = Home::new();
    let err = expect_err(
        home.pull(&client(), &format!("{}/{repo}:v1", fake.host()))
            .await,
    );
    assert_eq!(home.records(), 0);
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn schema1_manifests_are_refused() {
    let doc = json!({
        "schemaVersion": 1,
        "name": "old",
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": format!("sha256:{}", "a".repeat(64))}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": [],
    });
    let bytes = serde_json::to_vec(&doc).unwrap();
    let fake = fake_with_manifest(
        "old",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        &bytes,
    );
    let err = pull_fake(&fake, "old").await;
    assert_err_contains(&err, &["schema 1", "old:v1"]);
    assert!(matches!(err, registry::Error::Schema1 { .. }), "{err:?}");

    // The document alone gives it away, whatever the Content-Type says.
    let fake = fake_with_manifest("old", "application/json", &bytes);
    assert_err_contains(&pull_fake(&fake, "old").await, &["schema 1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_documents_are_refused() {
    // A 10 MiB manifest.
    let mut huge = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"pad":""#.to_vec();
    huge.resize(10 << 20, b'x');
    huge.extend_from_slice(br#""}}"#);
    let fake = fake_with_manifest("big", MediaKind::Oci.manifest_type(), &huge);
    let err = pull_fake(&fake, "big").await;
    assert!(matches!(err, registry::Error::TooLarge { .. }), "{err:?}");
    assert_err_contains(&err, &["manifest v1", "larger than 4194304 bytes"]);

    // An index with 5000 entries (well under the byte cap).
    let entry = |i: usize| {
        json!({
            "mediaType": MediaKind::Oci.manifest_type(),
            "digest": format!("sha256:{i:064x}"),
            "size": 500,
            "platform": {"architecture": format!("arch{i}"), "os": "linux"},
        })
    };
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MediaKind::Oci.index_type(),
        "manifests": (0..5000).map(entry).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    assert!(bytes.len() < 4 << 20);
    let fake = fake_with_manifest("wide", MediaKind::Oci.index_type(), &bytes);
    let err = pull_fake(&fake, "wide").await;
    assert_err_contains(&err, &["5000 manifests", "at most 1024"]);
    assert!(
        fake.requests()
            .iter()
            .filter(|r| r.path.contains("/manifests/"))
            .count()
            == 1,
        "no entry of a refused index is fetched: {:?}",
        fake.requests()
    );

    // A manifest with 300 layers.
    let layers: Vec<_> = (0..300)
        .map(|i| {
            json!({
                "mediaType": MediaKind::Oci.layer_type(registry_fixture::images::Compression::Gzip),
                "digest": format!("sha256:{i:064x}"),
                "size": 100,
            })
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MediaKind::Oci.manifest_type(),
        "config": {
            "mediaType": MediaKind::Oci.config_type(),
            "digest": format!("sha256:{}", "c".repeat(64)),
            "size": 100,
        },
        "layers": layers,
    });
    let fake = fake_with_manifest(
        "deep",
        MediaKind::Oci.manifest_type(),
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let err = pull_fake(&fake, "deep").await;
    assert_err_contains(&err, &["300 layers", "at most 256"]);
    assert!(
        fake.requests().iter().all(|r| !r.path.contains("/blobs/")),
        "{:?}",
        fake.requests()
    );
}

/// A fake serving a one-layer image whose layer blob is answered by `blob`; the manifest
/// claims the layer has `claimed_size` bytes.
fn fake_image(l: &Layer, claimed_size: u64, blob: Canned) -> FakeRegistry {
    let fake = FakeRegistry::start().unwrap();
    let spec = ImageSpec::new(vec![l.clone()]);
    let config = spec.config_json();
    let config_digest = fake.blob("img", &config);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&spec.manifest_json(&config_digest, config.len() as u64)).unwrap();
    manifest["layers"][0]["size"] = json!(claimed_size);
    fake.manifest(
        "img",
        "v1",
        MediaKind::Oci.manifest_type(),
        &serde_json::to_vec(&manifest).unwrap(),
    );
    fake.set("GET", &format!("/v2/img/blobs/{}", l.digest()), blob);
    fake
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_whose_content_length_lies_are_refused() {
    let l = layer(3400, 1, 100_000);
    let size = l.size();

    // Announces more than the descriptor: refused before a byte is stored.
    let fake = fake_image(
        &l,
        size,
        Canned::new(200, l.bytes()).header("Content-Length", &(size + 1).to_string()),
    );
    let home = Home::new();
    let err = expect_err(
        home.pull(&client(), &format!("{}/img:v1", fake.host()))
            .await,
    );
    assert_err_contains(&err, &[&format!("announces {}", size + 1), "layer 1/1"]);
    home.assert_nothing_visible(&l);

    // Announces what the descriptor says but sends less, every time: retried, then refused.
    let fake = fake_image(
        &l,
        size + 5000,
        Canned::new(200, l.bytes()).header("Content-Length", &(size + 5000).to_string()),
    );
    let home = Home::new();
    let err = expect_err(
        home.pull(&client(), &format!("{}/img:v1", fake.host()))
            .await,
    );
    assert_err_contains(&err, &["layer 1/1", "after 3 tries"]);
    home.assert_nothing_visible(&l);
    let tries = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(l.digest()))
        .count();
    assert_eq!(tries, 3, "{:?}", fake.requests());
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_the_pull_with_the_path_and_leaves_nothing_visible() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _mount = match Tmpfs::mount(dir.path(), "6m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: cannot mount a tmpfs: {e}");
            return;
        }
    };
    let reg = Registry::builder().start().unwrap();
    let big = layer(3500, 1, 10_000_000);
    let img = push(&reg.host(), "huge", "v1", vec![big.clone()], MediaKind::Oci);
    let home = Home::at(dir.path());
    let reference = format!("{}/huge:v1", reg.host());
    let err = expect_err(home.pull(&client(), &reference).await);
    assert_err_contains(
        &err,
        &[
            "No space left",
            &home.store.partial_dir().display().to_string(),
        ],
    );
    home.assert_nothing_visible(&big);
    assert!(!home.has_blob(&img.manifest_digest));
}
