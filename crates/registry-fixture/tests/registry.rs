//! The real registry fixture, checked with skopeo and umoci.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::Command;

use common::{inspect_digest, push_two_layer, raw, skopeo, skopeo_ok};
use registry_fixture::images::{Credentials, ImageSpec, Layer, MediaKind, Platform, Pusher};
use registry_fixture::{Auth, Registry, TokenServer};

#[test]
fn anonymous_push_then_skopeo_copy_and_umoci_unpack() {
    let reg = Registry::builder().start().unwrap();
    let pusher = Pusher::new(reg.host(), Credentials::None);
    let img = push_two_layer(&pusher, "lib/two", "v1", MediaKind::Oci);
    let src = format!("docker://{}/lib/two:v1", reg.host());

    let json = skopeo_ok(&["inspect", "--tls-verify=false", &src]);
    assert_eq!(inspect_digest(&json), img.manifest_digest);

    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let dest = format!("oci:{}:v1", layout.display());
    skopeo_ok(&["copy", "--src-tls-verify=false", &src, &dest]);

    // umoci checks the layers against the config's diff_ids while unpacking.
    let bundle = dir.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read(rootfs.join("layer-2/file-1.bin"))
            .unwrap()
            .len(),
        50_000
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("layer-1/link"))
            .unwrap()
            .to_str(),
        Some("file-0.bin")
    );
}

#[test]
fn docker_media_types_push_and_inspect() {
    let reg = Registry::builder().start().unwrap();
    let pusher = Pusher::new(reg.host(), Credentials::None);
    let img = push_two_layer(&pusher, "dock", "latest", MediaKind::Docker);
    let raw_manifest = skopeo_ok(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/dock:latest", reg.host()),
    ]);
    assert_eq!(raw_manifest.as_bytes(), img.manifest_bytes);
    let v: serde_json::Value = serde_json::from_str(&raw_manifest).unwrap();
    assert_eq!(v["mediaType"], MediaKind::Docker.manifest_type());
}

#[test]
fn basic_auth_refuses_anonymous_and_accepts_credentials() {
    let reg = Registry::builder()
        .auth(Auth::Basic {
            user: "bob",
            password: "hunter2",
        })
        .start()
        .unwrap();
    let anonymous = Pusher::new(reg.host(), Credentials::None);
    let spec = ImageSpec::new(vec![Layer::random_files(3, 1, 100).unwrap()]);
    assert!(anonymous.push_image("private", "v1", &spec).is_err());

    let pusher = Pusher::new(reg.host(), Credentials::basic("bob", "hunter2"));
    let img = pusher.push_image("private", "v1", &spec).unwrap();
    let src = format!("docker://{}/private:v1", reg.host());
    let no_creds = skopeo(&["inspect", "--tls-verify=false", "--no-creds", &src]);
    assert!(!no_creds.status.success());
    let wrong = skopeo(&["inspect", "--tls-verify=false", "--creds", "bob:nope", &src]);
    assert!(!wrong.status.success());
    let json = skopeo_ok(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "bob:hunter2",
        &src,
    ]);
    assert_eq!(inspect_digest(&json), img.manifest_digest);
}

#[test]
fn token_auth_with_x5c_jwts_is_accepted_by_distribution() {
    let tokens = TokenServer::builder()
        .user("alice", "s3cret")
        .user_with_actions("reader", "r", &["pull"])
        .start()
        .unwrap();
    let reg = Registry::builder()
        .auth(Auth::Token(&tokens))
        .start()
        .unwrap();
    let pusher = Pusher::new(reg.host(), Credentials::basic("alice", "s3cret"));
    let img = push_two_layer(&pusher, "team/app", "v2", MediaKind::Oci);
    assert!(tokens.tokens_issued() > 0);

    let src = format!("docker://{}/team/app:v2", reg.host());
    let before = tokens.tokens_issued();
    let json = skopeo_ok(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "alice:s3cret",
        &src,
    ]);
    assert_eq!(inspect_digest(&json), img.manifest_digest);
    assert!(tokens.tokens_issued() > before);
    let q = tokens.last_query().unwrap();
    assert!(q.contains("service=registry-fixture"), "{q}");
    assert!(q.contains("team%2Fapp") || q.contains("team/app"), "{q}");

    // A pull-only user can read but not push.
    skopeo_ok(&["inspect", "--tls-verify=false", "--creds", "reader:r", &src]);
    let reader = Pusher::new(reg.host(), Credentials::basic("reader", "r"));
    let spec = ImageSpec::new(vec![Layer::random_files(9, 1, 10).unwrap()]);
    assert!(reader.push_image("team/app", "nope", &spec).is_err());

    // No anonymous pull configured; a wrong password is a 401 at the realm.
    let anon = skopeo(&["inspect", "--tls-verify=false", "--no-creds", &src]);
    assert!(!anon.status.success());
    let rejected = tokens.requests_rejected();
    let wrong = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "alice:bad",
        &src,
    ]);
    assert!(!wrong.status.success());
    assert!(tokens.requests_rejected() > rejected);
}

#[test]
fn token_anonymous_pull_and_expiry() {
    // Two issuers: one plain, one whose exp cancels distribution's leeway.
    let plain = TokenServer::builder()
        .anonymous_pull(true)
        .expires_in(1)
        .start()
        .unwrap();
    let strict = TokenServer::builder()
        .anonymous_pull(true)
        .expires_in(2)
        .compensate_registry_leeway(true)
        .start()
        .unwrap();
    let seed = Registry::builder().start().unwrap();
    let pushed = push_two_layer(
        &Pusher::new(seed.host(), Credentials::None),
        "pub",
        "v1",
        MediaKind::Oci,
    );
    let reg_plain = Registry::builder()
        .auth(Auth::Token(&plain))
        .storage_dir(seed.storage_dir())
        .start()
        .unwrap();
    let reg_strict = Registry::builder()
        .auth(Auth::Token(&strict))
        .storage_dir(seed.storage_dir())
        .start()
        .unwrap();

    let token_for = |server: &TokenServer| {
        let (host, path) = server
            .realm()
            .strip_prefix("http://")
            .unwrap()
            .split_once('/')
            .map(|(h, p)| (h.to_string(), format!("/{p}")))
            .unwrap();
        let r = raw(
            &host,
            "GET",
            &format!("{path}?service=registry-fixture&scope=repository:pub:pull"),
            &[],
        );
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["token"], v["access_token"]);
        format!("Bearer {}", v["token"].as_str().unwrap())
    };
    let get = |reg: &Registry, auth: &str| {
        raw(
            &reg.host(),
            "GET",
            "/v2/pub/manifests/v1",
            &[
                ("Authorization", auth),
                ("Accept", "application/vnd.oci.image.manifest.v1+json"),
            ],
        )
        .status
    };
    let t_plain = token_for(&plain);
    let t_strict = token_for(&strict);
    assert_eq!(get(&reg_plain, &t_plain), 200);
    assert_eq!(get(&reg_strict, &t_strict), 200);
    let anon = raw(&reg_plain.host(), "GET", "/v2/pub/manifests/v1", &[]);
    assert_eq!(anon.status, 401);
    let challenge = anon.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    assert!(
        challenge.contains("scope=\"repository:pub:pull\""),
        "{challenge}"
    );

    std::thread::sleep(std::time::Duration::from_millis(3200));
    // distribution 2.8 still takes a token up to 60 s past its exp ...
    assert_eq!(get(&reg_plain, &t_plain), 200);
    // ... so the compensating issuer is what makes expiry observable.
    assert_eq!(get(&reg_strict, &t_strict), 401);
    // Anonymous skopeo pull works through the token flow.
    let json = skopeo_ok(&[
        "inspect",
        "--tls-verify=false",
        "--no-creds",
        &format!("docker://{}/pub:v1", reg_strict.host()),
    ]);
    assert_eq!(inspect_digest(&json), pushed.manifest_digest);
}

#[test]
fn tls_registry_with_its_own_ca() {
    let plain = Registry::builder().start().unwrap();
    let img = push_two_layer(
        &Pusher::new(plain.host(), Credentials::None),
        "secure",
        "v1",
        MediaKind::Oci,
    );
    let tls = Registry::builder()
        .tls(true)
        .storage_dir(plain.storage_dir())
        .start()
        .unwrap();
    assert!(tls.base_url().starts_with("https://127.0.0.1:"));
    let certs = tempfile::tempdir().unwrap();
    std::fs::write(certs.path().join("ca.crt"), tls.ca_pem().unwrap()).unwrap();
    let src = format!("docker://{}/secure:v1", tls.host());
    let untrusted = skopeo(&["inspect", &src]);
    assert!(!untrusted.status.success());
    let cert_dir = certs.path().to_str().unwrap();
    let json = skopeo_ok(&["inspect", "--cert-dir", cert_dir, &src]);
    assert_eq!(inspect_digest(&json), img.manifest_digest);
    // localhost is in the certificate too.
    let port = tls.addr().port();
    skopeo_ok(&[
        "inspect",
        "--cert-dir",
        cert_dir,
        &format!("docker://localhost:{port}/secure:v1"),
    ]);
}

#[test]
fn kill_and_restart_keep_port_and_storage() {
    let mut reg = Registry::builder().start().unwrap();
    let pusher = Pusher::new(reg.host(), Credentials::None);
    let img = push_two_layer(&pusher, "persist", "v1", MediaKind::Oci);
    let host = reg.host();
    let pid = reg.pid().unwrap();
    reg.kill();
    assert!(reg.pid().is_none());
    assert!(std::net::TcpStream::connect(&host).is_err());
    reg.restart().unwrap();
    assert_eq!(reg.host(), host);
    assert_ne!(reg.pid().unwrap(), pid);
    let (status, _, body) = pusher
        .get_manifest("persist", "v1", &[MediaKind::Oci.manifest_type()])
        .unwrap();
    assert_eq!((status, body), (200, img.manifest_bytes));
    // The kill switch works from another thread; restart reaps the old child.
    let switch = reg.kill_switch();
    std::thread::spawn(switch).join().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(std::net::TcpStream::connect(&host).is_err());
    reg.restart().unwrap();
    assert!(pusher.blob_exists("persist", &img.config_digest).unwrap());
}

#[test]
fn indexes_with_attestations_and_distribution_accept_rules() {
    let reg = Registry::builder().start().unwrap();
    let pusher = Pusher::new(reg.host(), Credentials::None);
    let mut entries = Vec::new();
    for (i, (arch, variant)) in [("amd64", None), ("arm64", Some("v8"))]
        .into_iter()
        .enumerate()
    {
        let mut spec = ImageSpec::new(vec![Layer::random_files(10 + i as u64, 1, 1000).unwrap()]);
        spec.architecture = arch.into();
        spec.variant = variant.map(String::from);
        let img = pusher
            .push_image("multi", &format!("{arch}-only"), &spec)
            .unwrap();
        entries.push((img, Platform::new("linux", arch, variant)));
    }
    let index = pusher
        .push_index("multi", "oci", &entries, MediaKind::Oci, true)
        .unwrap();
    assert!(index.attestation_digest.is_some());
    let list = pusher
        .push_index("multi", "docker", &entries, MediaKind::Docker, false)
        .unwrap();

    let host = reg.host();
    let raw_index = skopeo_ok(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/multi:oci"),
    ]);
    assert_eq!(raw_index.as_bytes(), index.bytes);
    let v: serde_json::Value = serde_json::from_str(&raw_index).unwrap();
    assert_eq!(v["manifests"][2]["platform"]["os"], "unknown");
    assert_eq!(
        v["manifests"][2]["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    let arm = skopeo_ok(&[
        "--override-arch",
        "arm64",
        "--override-variant",
        "v8",
        "inspect",
        "--tls-verify=false",
        &format!("docker://{host}/multi:oci"),
    ]);
    let arm: serde_json::Value = serde_json::from_str(&arm).unwrap();
    assert_eq!(arm["Architecture"], "arm64");
    // skopeo reports the index's digest but the chosen image's layers.
    assert_eq!(arm["Digest"], index.digest.as_str());
    assert_eq!(arm["Layers"][0], entries[1].0.layers[0].digest());

    // distribution 2.8 picks what to send by Accept:
    let oci_m = MediaKind::Oci.manifest_type();
    let docker_m = MediaKind::Docker.manifest_type();
    // an index is refused to a client that does not accept indexes,
    let (status, _, body) = pusher.get_manifest("multi", "oci", &[oci_m]).unwrap();
    assert_eq!(status, 404);
    let body = String::from_utf8_lossy(&body).to_string();
    assert!(
        body.contains("MANIFEST_UNKNOWN") && body.contains("accept header"),
        "{body}"
    );
    // an OCI manifest is refused to a client that accepts only Docker types,
    let (status, _, body) = pusher
        .get_manifest("multi", "amd64-only", &[docker_m])
        .unwrap();
    assert_eq!(status, 404);
    let body = String::from_utf8_lossy(&body).to_string();
    assert!(body.contains("accept header"), "{body}");
    // and a Docker list is rewritten to its linux/amd64 entry for such a client.
    let (status, ct, body) = pusher.get_manifest("multi", "docker", &[docker_m]).unwrap();
    assert_eq!((status, ct.as_deref()), (200, Some(oci_m)));
    assert_eq!(body, entries[0].0.manifest_bytes);
    let (status, ct, body) = pusher
        .get_manifest("multi", "docker", &[MediaKind::Docker.index_type()])
        .unwrap();
    assert_eq!(
        (status, ct.as_deref()),
        (200, Some(MediaKind::Docker.index_type()))
    );
    assert_eq!(body, list.bytes);

    // distribution validates references on PUT: missing blobs and missing
    // child manifests are refused.
    let mut ghost = entries[0].clone();
    ghost.0.manifest_digest = format!("sha256:{}", "0".repeat(64));
    let err = pusher
        .push_index("multi", "ghost", &[ghost], MediaKind::Oci, false)
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("MANIFEST_BLOB_UNKNOWN"),
        "{err:#}"
    );
    let spec = ImageSpec::new(vec![Layer::random_files(77, 1, 10).unwrap()]);
    let config = spec.config_json();
    let manifest = spec.manifest_json(
        &registry_fixture::images::sha256_digest(&config),
        config.len() as u64,
    );
    let err = pusher
        .push_manifest("multi", "noblobs", oci_m, &manifest)
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("MANIFEST_BLOB_UNKNOWN"),
        "{err:#}"
    );
}
