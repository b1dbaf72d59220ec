use super::*;
use crate::digest::{Algorithm, Digest};

fn d(n: u8) -> Digest {
    Digest::of(Algorithm::Sha256, &[n])
}

fn manifest_json(layers: &[(&str, Digest)], diffs: usize) -> (Vec<u8>, Vec<u8>) {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(t, dg)| serde_json::json!({"mediaType": t, "digest": dg.to_string(), "size": 10}))
        .collect();
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": d(0).to_string(), "size": 100},
        "layers": layers,
    });
    let diff_ids: Vec<String> = (0..diffs).map(|i| d(i as u8).to_string()).collect();
    let c = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    (
        serde_json::to_vec(&m).unwrap(),
        serde_json::to_vec(&c).unwrap(),
    )
}

#[test]
fn parses_oci_manifest_and_config() {
    let (m, c) = manifest_json(&[(OCI_LAYER_GZIP, d(1)), (OCI_LAYER_ZSTD, d(2))], 2);
    let m = parse_manifest(&m, "manifest").unwrap();
    let c = parse_config(&c, "config").unwrap();
    validate_image(&m, &c).unwrap();
    assert_eq!(m.layers.len(), 2);
    assert_eq!(m.layers[1].digest, d(2));
    assert_eq!(c.config.cmd.as_deref(), Some(&["/bin/sh".to_string()][..]));
    assert_eq!(c.config.working_dir, "/");
}

#[test]
fn docker_nulls_read_as_empty() {
    let c = br#"{"architecture":"amd64","os":"linux",
        "config":{"Env":null,"Cmd":null,"Entrypoint":null,"Labels":null,"ExposedPorts":null,
                  "WorkingDir":"","User":"","Volumes":null,"OnBuild":null},
        "rootfs":{"type":"layers","diff_ids":null},"history":null}"#;
    let c = parse_config(c, "config").unwrap();
    assert!(c.config.env.is_empty() && c.config.cmd.is_none() && c.history.is_empty());
    let c = br#"{"os":"linux","config":null,"rootfs":{"type":"layers","diff_ids":[]}}"#;
    assert_eq!(
        parse_config(c, "config").unwrap().config,
        RunConfig::default()
    );
}

#[test]
fn docker_v2_manifest_parses() {
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": d(0).to_string(), "size": 1},
        "layers": [{"mediaType": DOCKER_LAYER_GZIP, "digest": d(1).to_string(), "size": 2}],
    });
    parse_manifest(&serde_json::to_vec(&m).unwrap(), "m").unwrap();
}

#[test]
fn layer_count_must_match_diff_ids() {
    let (m, c) = manifest_json(&[(OCI_LAYER_TAR, d(1))], 2);
    let m = parse_manifest(&m, "manifest").unwrap();
    let c = parse_config(&c, "config").unwrap();
    let err = validate_image(&m, &c).unwrap_err().to_string();
    assert!(
        err.contains("1 layers") && err.contains("2 diff_ids"),
        "{err}"
    );
}

#[test]
fn rejects_bad_manifests_with_reasons() {
    let good = serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": OCI_CONFIG, "digest": d(0).to_string(), "size": 1},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": d(1).to_string(), "size": 1}],
    });
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("/schemaVersion", serde_json::json!(1), "schemaVersion 1"),
        (
            "/layers/0/mediaType",
            serde_json::json!("application/x-rar"),
            "application/x-rar",
        ),
        (
            "/config/mediaType",
            serde_json::json!("application/vnd.cncf.helm.config.v1+json"),
            "not a container image",
        ),
        (
            "/layers/0/digest",
            serde_json::json!("sha256:abc"),
            "invalid digest",
        ),
        (
            "/layers/0/digest",
            serde_json::json!("md5:00"),
            "unsupported algorithm",
        ),
        ("/layers/0/size", serde_json::json!(-1), "malformed"),
        ("/layers/0/size", serde_json::json!(u64::MAX), "at most"),
        (
            "/config/size",
            serde_json::json!(MAX_CONFIG_BYTES + 1),
            "at most",
        ),
        ("/layers", serde_json::json!("x"), "malformed"),
    ];
    for (ptr, value, want) in cases {
        let mut v = good.clone();
        *v.pointer_mut(ptr).unwrap() = value;
        let err = parse_manifest(&serde_json::to_vec(&v).unwrap(), "manifest of test")
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{ptr}: {err}");
    }
    let err = parse_manifest(b"{", "manifest of test")
        .unwrap_err()
        .to_string();
    assert!(err.contains("malformed manifest of test"), "{err}");
}

#[test]
fn too_many_layers_and_oversize_documents_are_refused() {
    let layers: Vec<(&str, Digest)> = (0..=MAX_LAYERS)
        .map(|i| (OCI_LAYER_TAR, d(i as u8)))
        .collect();
    let (m, _) = manifest_json(&layers, 0);
    let err = parse_manifest(&m, "manifest").unwrap_err().to_string();
    assert!(err.contains("at most 256"), "{err}");

    let big = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
    let err = parse_manifest(&big, "manifest").unwrap_err().to_string();
    assert!(err.contains("at most"), "{err}");
    let big = vec![b' '; MAX_CONFIG_BYTES as usize + 1];
    assert!(parse_config(&big, "config").is_err());
}

#[test]
fn rejects_bad_configs() {
    for (c, want) in [
        (
            r#"{"os":"windows","rootfs":{"type":"layers","diff_ids":[]}}"#,
            "windows",
        ),
        (
            r#"{"os":"linux","rootfs":{"type":"tarballs","diff_ids":[]}}"#,
            "tarballs",
        ),
        (r#"{"os":"linux"}"#, "rootfs"),
        (
            r#"{"os":"linux","rootfs":{"type":"layers","diff_ids":["x"]}}"#,
            "invalid digest",
        ),
    ] {
        let err = parse_config(c.as_bytes(), "config")
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{c}: {err}");
    }
}

fn index(entries: serde_json::Value) -> ImageIndex {
    let v = serde_json::json!({"schemaVersion": 2, "manifests": entries});
    parse_index(&serde_json::to_vec(&v).unwrap(), "index").unwrap()
}

fn entry(n: u8, os: &str, arch: &str) -> serde_json::Value {
    serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d(n).to_string(), "size": 5,
        "platform": {"os": os, "architecture": arch}})
}

#[test]
fn index_selects_host_platform() {
    let host = Platform::host();
    let i = index(serde_json::json!([
        entry(1, "linux", "s390x"),
        entry(2, "linux", &host.architecture),
        entry(3, "windows", &host.architecture),
    ]));
    assert_eq!(i.select(&host).unwrap().digest, d(2));
    let mips = Platform {
        architecture: "mips".into(),
        os: "linux".into(),
        variant: None,
    };
    let err = i.select(&mips).unwrap_err().to_string();
    assert!(err.contains("no manifest for linux/mips"), "{err}");
    assert!(
        err.contains("linux/s390x") && err.contains("windows/"),
        "{err}"
    );
}

fn variant_entry(n: u8, arch: &str, variant: Option<&str>) -> serde_json::Value {
    let mut e = entry(n, "linux", arch);
    if let Some(v) = variant {
        e["platform"]["variant"] = serde_json::json!(v);
    }
    e
}

fn platform(arch: &str, variant: Option<&str>) -> Platform {
    Platform {
        architecture: arch.into(),
        os: "linux".into(),
        variant: variant.map(str::to_string),
    }
}

#[test]
fn index_honours_variants() {
    let i = index(serde_json::json!([
        variant_entry(1, "arm", Some("v6")),
        variant_entry(2, "arm", Some("v7")),
        variant_entry(3, "arm64", None),
        variant_entry(4, "arm64", Some("v9")),
    ]));
    assert_eq!(i.select(&platform("arm", Some("v7"))).unwrap().digest, d(2));
    assert_eq!(i.select(&platform("arm", Some("v6"))).unwrap().digest, d(1));
    // arm64 without a variant is v8.
    assert_eq!(
        i.select(&platform("arm64", Some("v8"))).unwrap().digest,
        d(3)
    );
    assert_eq!(i.select(&platform("arm64", None)).unwrap().digest, d(3));
    assert_eq!(
        i.select(&platform("arm64", Some("v9"))).unwrap().digest,
        d(4)
    );
    let err = i
        .select(&platform("arm", Some("v5")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("linux/arm/v7"), "{err}");
    // A lone entry for another platform is not taken.
    let i = index(serde_json::json!([entry(1, "linux", "s390x")]));
    let err = i.select(&platform("amd64", None)).unwrap_err().to_string();
    assert!(err.contains("linux/s390x"), "{err}");
}

#[test]
fn index_skips_attestations_and_takes_the_only_image() {
    let mut att = entry(9, "unknown", "unknown");
    att["annotations"] = serde_json::json!({"vnd.docker.reference.type": "attestation-manifest"});
    let only =
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d(4).to_string(), "size": 5});
    let i = index(serde_json::json!([att, only]));
    assert_eq!(i.select(&Platform::host()).unwrap().digest, d(4));

    let i = index(serde_json::json!([
        entry(1, "linux", "mips"),
        entry(2, "linux", "riscv64")
    ]));
    let err = i.select(&Platform::host()).unwrap_err().to_string();
    assert!(
        err.contains("linux/mips") && err.contains("linux/riscv64"),
        "{err}"
    );

    let i = index(serde_json::json!([]));
    assert!(i.select(&Platform::host()).is_err());
}

#[test]
fn docker_archive_manifest_parses_and_validates() {
    let m = br#"[{"Config":"abc.json","RepoTags":["demo:1"],"Layers":["l1/layer.tar"]}]"#;
    let images = parse_docker_manifest(m, "manifest.json").unwrap();
    assert_eq!(images[0].repo_tags, ["demo:1"]);
    let m = br#"[{"Config":"abc.json","RepoTags":null,"Layers":[""]}]"#;
    assert!(parse_docker_manifest(m, "manifest.json").is_err());
    assert!(parse_docker_manifest(b"[]", "manifest.json").is_err());
    assert!(parse_docker_manifest(b"{}", "manifest.json").is_err());
}

#[test]
fn manifest_round_trips_through_serde() {
    let (m, _) = manifest_json(&[(OCI_LAYER_GZIP, d(1))], 1);
    let parsed = parse_manifest(&m, "m").unwrap();
    let again = parse_manifest(&serde_json::to_vec(&parsed).unwrap(), "m").unwrap();
    assert_eq!(parsed, again);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = parse_manifest(&bytes, "m");
        let _ = parse_index(&bytes, "i");
        let _ = parse_config(&bytes, "c");
        let _ = parse_docker_manifest(&bytes, "d");
    }

    #[test]
    fn arbitrary_json_never_panics(s in "[\\[\\]{}\",:0-9a-z ]{0,200}") {
        let _ = parse_manifest(s.as_bytes(), "m");
        let _ = parse_index(s.as_bytes(), "i");
        let _ = parse_config(s.as_bytes(), "c");
        let _ = parse_docker_manifest(s.as_bytes(), "d");
    }
}
