//! Importing OCI image layouts: directories and tars, every layer compression, sha512 blobs,
//! nested and multi-platform indexes, names, and idempotent re-import.

// Helpers here set up fixtures for the tests; a failed step should panic like a test does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod import_support;

use std::fs;
use std::io::Read;

use import_support::*;
use oci_layers::spec::{self, ANNOTATION_REF_NAME, OCI_INDEX, Platform};
use oci_layers::{Algorithm, Compression, Digest, LayoutBuilder};
use serde_json::json;

#[test]
fn imports_gzip_zstd_and_plain_layers() {
    let h = home();
    let builder = three_layers(h.dir.path());
    let dir = layout(h.dir.path(), "layout", &builder, "demo:1");
    let built = builder.write_layout(&dir, "demo:1").unwrap();

    let record = h.store.import(&dir, None, false).unwrap();
    assert_eq!(record.name, "demo:1");
    assert_eq!(record.manifest_digest, built.manifest.digest);
    assert_eq!(record.config_digest, built.config.digest);
    assert_eq!(record.layers.len(), 3);
    let compressions: Vec<Compression> = record
        .layers
        .iter()
        .map(|l| l.compression().unwrap())
        .collect();
    assert_eq!(
        compressions,
        [Compression::Gzip, Compression::Zstd, Compression::None]
    );
    for (l, b) in record.layers.iter().zip(&built.layers) {
        assert_eq!(l.digest, b.descriptor.digest);
        assert_eq!(l.diff_id, b.diff_id);
        assert_eq!(l.size, b.descriptor.size);
        // The stored blob is byte for byte the layout's.
        let mut stored = Vec::new();
        h.store
            .open_blob(&l.digest)
            .unwrap()
            .read_to_end(&mut stored)
            .unwrap();
        assert_eq!(stored, fs::read(blob_path(&dir, &l.digest)).unwrap());
    }
    let sum: u64 = built.layers.iter().map(|l| l.descriptor.size).sum::<u64>()
        + built.config.size
        + built.manifest.size;
    assert_eq!(record.size, sum);

    let image = h.store.get("demo:1").unwrap();
    assert_eq!(image.record, record);
    assert_eq!(
        image.config.config.cmd.as_deref(),
        Some(&["/bin/sh".to_string()][..])
    );
    assert_eq!(image.config.config.working_dir, "/root");
    assert_eq!(image.manifest.layers.len(), 3);
    assert_eq!(h.store.list().unwrap(), [record]);
    assert!(h.tmp_files().is_empty());
}

#[test]
fn reimport_is_idempotent() {
    let h = home();
    let dir = layout(h.dir.path(), "layout", &three_layers(h.dir.path()), "demo");
    let first = h.store.import(&dir, None, false).unwrap();
    let blobs = h.store.blobs().unwrap();
    let mtimes: Vec<_> = blobs
        .iter()
        .map(|b| {
            fs::metadata(h.store.blob_path(b))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    let second = h.store.import(&dir, None, true).unwrap();
    assert_eq!(
        (first.manifest_digest, first.layers, first.name),
        (second.manifest_digest, second.layers, second.name)
    );
    assert_eq!(h.store.blobs().unwrap(), blobs);
    let again: Vec<_> = blobs
        .iter()
        .map(|b| {
            fs::metadata(h.store.blob_path(b))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    assert_eq!(mtimes, again, "blobs were rewritten");
    assert_eq!(h.store.list().unwrap().len(), 1);
    assert!(h.tmp_files().is_empty());
}

#[test]
fn imports_sha512_blobs() {
    let h = home();
    let builder = three_layers(h.dir.path()).digest_algorithm(Algorithm::Sha512);
    let dir = layout(h.dir.path(), "layout", &builder, "five-twelve");
    assert!(dir.join("blobs/sha512").read_dir().unwrap().count() == 5);
    let record = h.store.import(&dir, None, false).unwrap();
    assert_eq!(record.manifest_digest.algorithm(), Algorithm::Sha512);
    assert!(
        record
            .layers
            .iter()
            .all(|l| l.digest.algorithm() == Algorithm::Sha512)
    );
    assert!(
        h.store
            .blob_path(&record.config_digest)
            .starts_with(h.store.root().join("blobs/sha512"))
    );
    let image = h.store.get("five-twelve").unwrap();
    assert_eq!(image.config.rootfs.diff_ids.len(), 3);

    // A corrupted sha512 blob is caught too.
    let h2 = home();
    let victim = layer_digest(&dir, 1);
    let path = blob_path(&dir, &victim);
    let mut bytes = fs::read(&path).unwrap();
    bytes[10] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let err = h2.store.import(&dir, None, false).unwrap_err().to_string();
    assert!(
        err.contains("digest mismatch") && err.contains(&victim.to_string()),
        "{err}"
    );
    h2.assert_empty();
}

#[test]
fn imports_a_layout_packed_in_a_tar() {
    let h = home();
    let dir = layout(
        h.dir.path(),
        "layout",
        &three_layers(h.dir.path()),
        "packed",
    );
    let tar = h.dir.path().join("layout.tar");
    pack(&dir, &tar);
    let record = h.store.import(&tar, None, false).unwrap();
    assert_eq!(record.name, "packed");
    let from_dir = home().store.import(&dir, None, false).unwrap();
    assert_eq!(record.manifest_digest, from_dir.manifest_digest);
}

#[test]
fn name_defaults_and_overrides() {
    let h = home();
    let dir = layout(
        h.dir.path(),
        "layout",
        &three_layers(h.dir.path()),
        "from-ref",
    );
    assert_eq!(
        h.store.import(&dir, Some("chosen:2"), false).unwrap().name,
        "chosen:2"
    );
    assert_eq!(h.store.import(&dir, None, false).unwrap().name, "from-ref");
    let names: Vec<String> = h
        .store
        .list()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["chosen:2", "from-ref"]);

    // No usable ref name: the short id of the config digest.
    let bare = layout(h.dir.path(), "bare", &three_layers(h.dir.path()), "x");
    let mut index = read_json(&bare.join("index.json"));
    index["manifests"][0]["annotations"] = json!({ ANNOTATION_REF_NAME: "bad name with spaces" });
    fs::write(bare.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let r = h.store.import(&bare, None, false).unwrap();
    assert_eq!(r.name, &r.config_digest.hex()[..12]);
    assert_eq!(r.short_id(), r.name);

    let err = h
        .store
        .import(&dir, Some("bad name"), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid image name"), "{err}");
}

#[test]
fn several_images_in_one_layout_need_a_name() {
    let h = home();
    let dir = h.dir.path().join("layout");
    let a = LayoutBuilder::new().layer_dir(tree(h.dir.path(), "a"), Compression::Gzip);
    let b = LayoutBuilder::new().layer_dir(tree(h.dir.path(), "b"), Compression::Gzip);
    let built_a = a.write_layout(&dir, "a").unwrap();
    let built_b = b.write_layout(&dir, "b").unwrap();
    assert_eq!(ref_names(&dir), ["a", "b"]);
    let err = h.store.import(&dir, None, false).unwrap_err().to_string();
    assert!(err.contains("several images (a, b)"), "{err}");
    h.assert_empty();
    assert_eq!(
        h.store
            .import(&dir, Some("b"), false)
            .unwrap()
            .manifest_digest,
        built_b.manifest.digest
    );
    assert_eq!(
        h.store
            .import(&dir, Some("a"), false)
            .unwrap()
            .manifest_digest,
        built_a.manifest.digest
    );
}

/// Rewrites the layout's index.json to list one nested index blob with `entries`.
fn nest(dir: &std::path::Path, entries: serde_json::Value) {
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries,
    }))
    .unwrap();
    let d = write_blob(dir, Algorithm::Sha256, &nested);
    let top = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_INDEX, "digest": d.to_string(), "size": nested.len(),
        "annotations": {ANNOTATION_REF_NAME: "multi:latest"},
    }]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
}

#[test]
fn nested_multi_platform_index_selects_host() {
    let h = home();
    let dir = h.dir.path().join("layout");
    let host = LayoutBuilder::new()
        .layer_dir(tree(h.dir.path(), "host"), Compression::Gzip)
        .write_layout(&dir, "host")
        .unwrap();
    let other = LayoutBuilder::new()
        .architecture("s390x")
        .layer_dir(tree(h.dir.path(), "s390x"), Compression::Gzip)
        .write_layout(&dir, "other")
        .unwrap();
    let entry = |b: &oci_layers::builder::BuiltImage, arch: &str| {
        json!({"mediaType": spec::OCI_MANIFEST, "digest": b.manifest.digest.to_string(),
               "size": b.manifest.size, "platform": {"os": "linux", "architecture": arch}})
    };
    let attestation = json!({"mediaType": spec::OCI_MANIFEST, "digest": other.manifest.digest.to_string(),
        "size": other.manifest.size, "platform": {"os": "unknown", "architecture": "unknown"},
        "annotations": {"vnd.docker.reference.type": "attestation-manifest"}});
    let arch = Platform::host().architecture;
    nest(
        &dir,
        json!([entry(&other, "s390x"), attestation, entry(&host, &arch)]),
    );
    let record = h.store.import(&dir, None, false).unwrap();
    assert_eq!(record.name, "multi:latest");
    assert_eq!(record.manifest_digest, host.manifest.digest);

    // No manifest for this machine: the error lists what there is.
    nest(
        &dir,
        json!([entry(&other, "s390x"), entry(&other, "mips64le")]),
    );
    let err = home()
        .store
        .import(&dir, None, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("linux/s390x") && err.contains("linux/mips64le"),
        "{err}"
    );

    // An index nested two deep is refused.
    let inner = fs::read(dir.join("index.json")).unwrap();
    let top: serde_json::Value = serde_json::from_slice(&inner).unwrap();
    let mut deeper = top["manifests"][0].clone();
    deeper["platform"] = json!({"os": "linux", "architecture": arch});
    nest(&dir, json!([deeper]));
    let err = home()
        .store
        .import(&dir, None, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("one level of nesting"), "{err}");
}

#[test]
fn digest_prefix_and_latest_lookups() {
    let h = home();
    let dir = layout(
        h.dir.path(),
        "layout",
        &three_layers(h.dir.path()),
        "web:latest",
    );
    let r = h.store.import(&dir, None, false).unwrap();
    assert_eq!(h.store.get("web").unwrap().record, r);
    assert_eq!(h.store.get(r.short_id()).unwrap().record, r);
    assert_eq!(
        h.store.get(&r.manifest_digest.to_string()).unwrap().record,
        r
    );
    assert_eq!(
        h.store
            .get(&format!("sha256:{}", &r.manifest_digest.hex()[..8]))
            .unwrap()
            .record,
        r
    );
    let err = h.store.get("nope").unwrap_err().to_string();
    assert_eq!(err, "no image named nope; see `boxlite image ls`");
    assert!(
        h.store.get("abc").is_err(),
        "3 hex digits are too short to be a prefix"
    );
    let d = Digest::of(Algorithm::Sha256, b"unrelated");
    assert!(h.store.get(&d.to_string()).is_err());
}

/// Runs `umoci` with `args`; false if it is not installed.
fn umoci(args: &[&str]) -> bool {
    match std::process::Command::new("umoci").args(args).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "umoci {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            true
        }
        Err(_) => false,
    }
}

#[test]
fn imports_a_layout_written_by_umoci() {
    let h = home();
    let l = h.dir.path().join("umoci-layout");
    let l_str = l.to_str().unwrap();
    let image = format!("{l_str}:base");
    if !umoci(&["init", "--layout", l_str]) {
        eprintln!("skipping: umoci is not installed");
        return;
    }
    umoci(&["new", "--image", &image]);
    let t = tree(h.dir.path(), "umoci");
    umoci(&[
        "insert",
        "--rootless",
        "--image",
        &image,
        t.to_str().unwrap(),
        "/opt",
    ]);
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.cmd=/bin/true",
        "--config.workingdir=/opt",
    ]);

    let record = h.store.import(&l, None, false).unwrap();
    assert_eq!(record.name, "base");
    assert_eq!(record.layers.len(), 1);
    assert_eq!(record.layers[0].compression().unwrap(), Compression::Gzip);
    let image = h.store.get("base").unwrap();
    assert_eq!(image.config.config.working_dir, "/opt");
    assert_eq!(
        image.config.config.cmd.as_deref(),
        Some(&["/bin/true".to_string()][..])
    );
    // The stored layer decompresses to the diff_id umoci recorded.
    let blob = h.store.open_blob(&record.layers[0].digest).unwrap();
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(blob)
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(
        Digest::of(Algorithm::Sha256, &tar),
        record.layers[0].diff_id
    );
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("opt/etc/os-release")),
        "{names:?}"
    );
}
