//! Pulls from a real anonymous docker-registry: OCI and Docker schema 2 images, pulls by
//! digest, multi-platform indexes, unknown tags and repositories, a docker.io mirror and two
//! pulls at once into one store.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::{Arc, Mutex};

use oci_layers::spec::Platform as OciPlatform;
use registry::{Client, PullEvent, PullOptions, parse_platform};
use registry_fixture::images::{
    Credentials, ImageSpec, MediaKind, Platform, PushedImage, PushedIndex, Pusher,
};
use registry_fixture::{FakeRegistry, Registry};
use support::{
    Home, assert_err_contains, assert_pulled, client, expect_err, layer, options, push,
    three_layers,
};

/// Pulls a three-layer image of `media` and checks store, cache, files and a second pull.
async fn pull_three_layers(media: MediaKind, seed: u64) {
    let reg = Registry::builder().start().unwrap();
    let layers = three_layers(seed);
    let img = push(&reg.host(), "team/app", "v1", layers.clone(), media);
    let home = Home::new();
    let client = client();
    let reference = format!("{}/team/app:v1", reg.host());

    let events = Arc::new(Mutex::new(Vec::new()));
    let mut opts = PullOptions::default();
    let seen = events.clone();
    opts.progress = Some(Arc::new(move |e: &PullEvent| {
        seen.lock().unwrap().push(e.clone());
    }));
    let pulled = home.pull_with(&client, &reference, &opts).await.unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
    assert_eq!(pulled.layers_downloaded, 3);
    let total: u64 = layers.iter().map(|l| l.size()).sum();
    assert_eq!(pulled.bytes_received, total);
    assert_eq!(pulled.served_by, reg.host());
    assert!(pulled.index_digest.is_none());
    assert!(pulled.replaced.is_none());
    assert_eq!(home.records(), 1);
    for (got, want) in pulled.record.layers.iter().zip(&layers) {
        assert_eq!(
            got.media_type,
            media.layer_type(want.compression()),
            "layer media type"
        );
    }
    {
        let events = events.lock().unwrap();
        let resolved = events
            .iter()
            .filter(|e| matches!(e, PullEvent::Resolved { layers, .. } if layers.len() == 3))
            .count();
        let downloaded = events
            .iter()
            .filter(|e| matches!(e, PullEvent::Downloaded { .. }))
            .count();
        let extracted = events
            .iter()
            .filter(|e| matches!(e, PullEvent::Extracted { .. }))
            .count();
        assert_eq!((resolved, downloaded, extracted), (1, 3, 3), "{events:?}");
    }

    // Everything is stored now: nothing is downloaded again.
    let again = home.pull(&client, &reference).await.unwrap();
    assert_eq!(again.layers_downloaded, 0);
    assert_eq!(again.bytes_received, 0);
    assert_eq!(again.record.manifest_digest, pulled.record.manifest_digest);
    assert_eq!(
        again.replaced.as_ref().map(|r| &r.manifest_digest),
        Some(&pulled.record.manifest_digest)
    );
    assert_eq!(home.records(), 1);

    // A new client (no cached scheme or challenge) finds the layers stored as well.
    let fresh = home.pull(&support::client(), &reference).await.unwrap();
    assert_eq!((fresh.layers_downloaded, fresh.bytes_received), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn oci_image_pulls_into_store_and_cache_once() {
    pull_three_layers(MediaKind::Oci, 100).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_schema2_image_pulls_into_store_and_cache_once() {
    pull_three_layers(MediaKind::Docker, 200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_by_digest_and_by_tag_with_digest() {
    let reg = Registry::builder().start().unwrap();
    let img = push(
        &reg.host(),
        "pinned",
        "v1",
        three_layers(300),
        MediaKind::Oci,
    );
    let other = push(
        &reg.host(),
        "pinned",
        "v2",
        vec![layer(310, 1, 1000)],
        MediaKind::Oci,
    );
    let home = Home::new();
    let client = client();

    let by_digest = format!("{}/pinned@{}", reg.host(), img.manifest_digest);
    let pulled = home.pull(&client, &by_digest).await.unwrap();
    assert_pulled(&home, &pulled, &img, &by_digest);

    // The digest decides; the tag is kept only in the name.
    let tag_and_digest = format!("{}/pinned:v2@{}", reg.host(), img.manifest_digest);
    let pulled = home.pull(&client, &tag_and_digest).await.unwrap();
    assert_pulled(&home, &pulled, &img, &tag_and_digest);
    assert_eq!(pulled.layers_downloaded, 0);

    // A digest the registry does not have.
    let missing = "sha256:".to_string() + &"ab".repeat(32);
    let err = expect_err(
        home.pull(&client, &format!("{}/pinned:v1@{missing}", reg.host()))
            .await,
    );
    assert_err_contains(&err, &["no manifest", &missing, "pinned", &reg.host()]);
    assert_eq!(home.records(), 2);
    assert!(!home.has_blob(other.layers[0].digest()));

    // A registry that answers a pinned digest with other bytes is refused.
    let fake = FakeRegistry::start().unwrap();
    fake.set(
        "GET",
        &format!("/v2/pinned/manifests/{}", img.manifest_digest),
        registry_fixture::Canned::new(200, other.manifest_bytes.clone())
            .header("Content-Type", &other.manifest_media_type),
    );
    let lying = format!("{}/pinned@{}", fake.host(), img.manifest_digest);
    let home = Home::new();
    let err = expect_err(home.pull(&client, &lying).await);
    assert_err_contains(
        &err,
        &[
            "digest mismatch",
            &img.manifest_digest,
            &other.manifest_digest,
        ],
    );
    assert_eq!(home.records(), 0);
    // Nothing past the manifest was asked for.
    assert!(
        fake.requests().iter().all(|r| !r.path.contains("/blobs/")),
        "{:?}",
        fake.requests()
    );
}

/// Pushes linux/amd64, linux/arm64 and linux/arm/v7 images and an index (with an attestation)
/// over them as `repo:multi`.
fn push_multi(
    host: &str,
    repo: &str,
    media: MediaKind,
    seed: u64,
) -> (Vec<PushedImage>, PushedIndex) {
    let pusher = Pusher::new(host, Credentials::None);
    let platforms = [
        Platform::new("linux", "amd64", None),
        Platform::new("linux", "arm64", None),
        Platform::new("linux", "arm", Some("v7")),
    ];
    let mut images = Vec::new();
    for (i, p) in platforms.iter().enumerate() {
        let mut spec = ImageSpec::new(vec![layer(seed + i as u64, 1, 5_000)]);
        spec.media = media;
        spec.architecture = p.architecture.clone();
        spec.variant = p.variant.clone();
        let tag = format!("only-{i}");
        images.push(pusher.push_image(repo, &tag, &spec).unwrap());
    }
    let entries: Vec<_> = images
        .iter()
        .cloned()
        .zip(platforms.iter().cloned())
        .collect();
    let index = pusher
        .push_index(repo, "multi", &entries, media, true)
        .unwrap();
    assert!(index.attestation_digest.is_some());
    (images, index)
}

async fn multi_platform(media: MediaKind, seed: u64) {
    let reg = Registry::builder().start().unwrap();
    let (images, index) = push_multi(&reg.host(), "multi", media, seed);
    let client = client();
    let reference = format!("{}/multi:multi", reg.host());
    let with = |platform: OciPlatform| {
        let mut o = PullOptions::default();
        o.platform = platform;
        o
    };

    // The host's platform by default.
    let host = OciPlatform::host();
    let home = Home::new();
    let pulled = home.pull(&client, &reference).await.unwrap();
    let expected = match host.architecture.as_str() {
        "amd64" => &images[0],
        "arm64" => &images[1],
        other => panic!("no image pushed for this host's architecture {other}"),
    };
    assert_pulled(&home, &pulled, expected, &reference);
    assert_eq!(pulled.record.architecture, host.architecture);
    assert_eq!(
        pulled.index_digest.as_ref().map(ToString::to_string),
        Some(index.digest.clone())
    );

    for (platform, image, arch) in [
        ("linux/arm/v7", &images[2], "arm"),
        ("linux/aarch64", &images[1], "arm64"),
        ("linux/amd64", &images[0], "amd64"),
    ] {
        let home = Home::new();
        let pulled = home
            .pull_with(
                &client,
                &reference,
                &with(parse_platform(platform).unwrap()),
            )
            .await
            .unwrap();
        assert_pulled(&home, &pulled, image, &reference);
        assert_eq!(pulled.record.architecture, arch, "{platform}");
    }

    let home = Home::new();
    let err = expect_err(
        home.pull_with(
            &client,
            &reference,
            &with(parse_platform("linux/s390x").unwrap()),
        )
        .await,
    );
    assert_err_contains(
        &err,
        &[
            "linux/s390x",
            "linux/amd64",
            "linux/arm64",
            "linux/arm/v7",
            "--platform",
        ],
    );
    assert!(!err.to_string().contains("unknown"), "{err}");
    assert_eq!(home.records(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn oci_index_picks_the_platform() {
    multi_platform(MediaKind::Oci, 400).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_manifest_list_picks_the_platform() {
    multi_platform(MediaKind::Docker, 500).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_tag_and_unknown_repository_are_named() {
    let reg = Registry::builder().start().unwrap();
    push(
        &reg.host(),
        "team/app",
        "v1",
        vec![layer(600, 1, 100)],
        MediaKind::Oci,
    );
    let home = Home::new();
    let client = client();

    let err = expect_err(
        home.pull(&client, &format!("{}/team/app:nosuch", reg.host()))
            .await,
    );
    assert_err_contains(
        &err,
        &["no tag nosuch in team/app", &format!("on {}", reg.host())],
    );
    assert!(
        matches!(err, registry::Error::ManifestUnknown { .. }),
        "{err:?}"
    );

    // distribution 2.8 answers a manifest of an unknown repository with 404 NAME_UNKNOWN.
    let err = expect_err(
        home.pull(&client, &format!("{}/no/such/repo:v1", reg.host()))
            .await,
    );
    assert_eq!(
        err.to_string(),
        format!("no repository no/such/repo on {}", reg.host())
    );
    assert!(
        matches!(err, registry::Error::NameUnknown { .. }),
        "{err:?}"
    );
    assert_eq!(home.records(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn name_unknown_from_a_fake_says_no_repository() {
    // The registry's error body decides, not the status alone.
    let fake = FakeRegistry::start().unwrap();
    fake.set(
        "GET",
        "/v2/ghost/manifests/latest",
        registry_fixture::Canned::new(
            404,
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
        )
        .header("Content-Type", "application/json"),
    );
    let home = Home::new();
    let err = expect_err(
        home.pull(&client(), &format!("{}/ghost", fake.host()))
            .await,
    );
    assert_err_contains(&err, &["no repository ghost on", &fake.host()]);
    // Its default 404 is MANIFEST_UNKNOWN: an unknown tag of a known repository.
    let err = expect_err(
        home.pull(&client(), &format!("{}/ghost:v2", fake.host()))
            .await,
    );
    assert_eq!(
        err.to_string(),
        format!("no tag v2 in ghost on {}", fake.host())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_io_mirror_serves_library_images() {
    let mirror = Registry::builder().start().unwrap();
    let img = push(
        &mirror.host(),
        "library/tiny",
        "latest",
        vec![layer(700, 1, 2_000)],
        MediaKind::Docker,
    );
    let mut o = options();
    o.docker_io_mirror = Some(format!("http://{}/", mirror.host()));
    let client = Client::new(o).unwrap();
    let home = Home::new();
    let pulled = home.pull(&client, "tiny").await.unwrap();
    assert_eq!(pulled.served_by, mirror.host());
    assert_pulled(&home, &pulled, &img, "docker.io/library/tiny:latest");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pulls_of_one_image_at_once_share_the_store() {
    let reg = Registry::builder().start().unwrap();
    let layers: Vec<_> = (0..3).map(|i| layer(800 + i, 4, 100_000)).collect();
    let img = push(&reg.host(), "shared", "v1", layers, MediaKind::Oci);
    let home = Home::new();
    let reference = format!("{}/shared:v1", reg.host());
    let (a, b) = (client(), client());
    let (ra, rb) = tokio::join!(home.pull(&a, &reference), home.pull(&b, &reference));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_pulled(&home, &ra, &img, &reference);
    assert_pulled(&home, &rb, &img, &reference);
    // Each layer came over the network once: the other pull waited for it and found it stored.
    assert_eq!(ra.layers_downloaded + rb.layers_downloaded, 3);
    assert_eq!(home.records(), 1);
    assert!(home.store.partial_dir().read_dir().map_or(true, |d| {
        d.filter_map(Result::ok)
            .all(|e| e.file_name().to_string_lossy().ends_with(".lock"))
    }));
}
