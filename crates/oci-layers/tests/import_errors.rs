//! Bad input — missing blobs, digest and size mismatches, malformed JSON, unknown media types,
//! truncated archives — fails with an error naming the image or blob and the problem, and
//! leaves no image record, no blob and no temporary file behind.

// Helpers here set up fixtures for the tests; a failed step should panic like a test does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod import_support;

use std::fs;
use std::path::{Path, PathBuf};

use import_support::*;
use oci_layers::builder::DockerArchiveFormat;
use oci_layers::{Algorithm, Compression, Error, LayoutBuilder};
use serde_json::{Value, json};

/// Imports `path` into a fresh store, expects failure, checks nothing was left, and returns
/// the error.
fn fails(path: &Path) -> Error {
    let h = home();
    let err = h.store.import(path, None, false).unwrap_err();
    h.assert_empty();
    err
}

fn fresh_layout() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let l = layout(dir.path(), "layout", &three_layers(dir.path()), "bad");
    (dir, l)
}

#[test]
fn missing_layer_blob() {
    let (_d, l) = fresh_layout();
    let victim = layer_digest(&l, 1);
    fs::remove_file(blob_path(&l, &victim)).unwrap();
    let err = fails(&l).to_string();
    assert!(err.contains(&format!("layer 2/3 ({victim})")), "{err}");
    assert!(
        err.contains("is missing") && err.contains(&l.display().to_string()),
        "{err}"
    );
}

#[test]
fn missing_manifest_and_config_blobs() {
    let (_d, l) = fresh_layout();
    let config: oci_layers::Digest = manifest(&l)["config"]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    fs::remove_file(blob_path(&l, &config)).unwrap();
    let err = fails(&l).to_string();
    assert!(
        err.contains(&format!("config {config}")) && err.contains("missing"),
        "{err}"
    );

    let (_d, l) = fresh_layout();
    let index = read_json(&l.join("index.json"));
    let m = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    fs::remove_file(blob_path(&l, &m.parse().unwrap())).unwrap();
    let err = fails(&l).to_string();
    assert!(
        err.contains(&format!("manifest {m}")) && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn corrupted_last_layer_leaves_no_blobs_from_the_others() {
    let (_d, l) = fresh_layout();
    let victim = layer_digest(&l, 2);
    let path = blob_path(&l, &victim);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let err = fails(&l);
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("layer 3/3 ({victim})")) && msg.contains(&victim.to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&oci_layers::Digest::of(Algorithm::Sha256, &bytes).to_string()),
        "{msg}"
    );
}

#[test]
fn layer_size_mismatch() {
    let (_d, l) = fresh_layout();
    let victim = layer_digest(&l, 0);
    let path = blob_path(&l, &victim);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let err = fails(&l).to_string();
    assert!(err.contains("size mismatch for layer 1/3"), "{err}");

    let (_d, l) = fresh_layout();
    let victim = layer_digest(&l, 0);
    let mut bytes = fs::read(blob_path(&l, &victim)).unwrap();
    bytes.extend_from_slice(b"trailing");
    fs::write(blob_path(&l, &victim), &bytes).unwrap();
    let err = fails(&l).to_string();
    assert!(
        err.contains("size mismatch for layer 1/3") && err.contains("has more"),
        "{err}"
    );
}

#[test]
fn malformed_json_documents() {
    let (_d, l) = fresh_layout();
    fs::write(
        l.join("index.json"),
        b"{\"schemaVersion\": 2, \"manifests\": [",
    )
    .unwrap();
    let err = fails(&l).to_string();
    assert!(err.contains("malformed index.json of"), "{err}");

    let (_d, l) = fresh_layout();
    set_manifest_bytes(&l, b"{\"schemaVersion\": 2, \"config\": 7}");
    let err = fails(&l).to_string();
    assert!(err.contains("malformed manifest sha256:"), "{err}");

    let (_d, l) = fresh_layout();
    let bad = b"not json at all";
    let d = write_blob(&l, Algorithm::Sha256, bad);
    edit_manifest(&l, |m| {
        m["config"]["digest"] = Value::String(d.to_string());
        m["config"]["size"] = Value::from(bad.len());
    });
    let err = fails(&l).to_string();
    assert!(err.contains(&format!("malformed config {d}")), "{err}");

    let (_d, l) = fresh_layout();
    fs::write(l.join("oci-layout"), b"[]").unwrap();
    let err = fails(&l).to_string();
    assert!(err.contains("malformed oci-layout file"), "{err}");

    let (_d, l) = fresh_layout();
    fs::write(l.join("oci-layout"), br#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
    let err = fails(&l).to_string();
    assert!(err.contains("layout version \"2.0.0\""), "{err}");
}

#[test]
fn unknown_layer_media_type() {
    let (_d, l) = fresh_layout();
    edit_manifest(&l, |m| {
        m["layers"][1]["mediaType"] = "application/vnd.example.layer+rar".into()
    });
    let err = fails(&l);
    assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("application/vnd.example.layer+rar") && msg.contains("layer 2/3"),
        "{msg}"
    );
}

#[test]
fn config_that_does_not_match_the_manifest() {
    let (_d, l) = fresh_layout();
    edit_config(&l, |c| {
        c["rootfs"]["diff_ids"].as_array_mut().unwrap().pop();
    });
    let err = fails(&l).to_string();
    assert!(
        err.contains("lists 3 layers but config") && err.contains("2 diff_ids"),
        "{err}"
    );

    let (_d, l) = fresh_layout();
    edit_config(&l, |c| c["os"] = "windows".into());
    let err = fails(&l).to_string();
    assert!(err.contains("only linux images"), "{err}");
}

#[test]
fn absurd_sizes_are_refused_before_reading() {
    let (_d, l) = fresh_layout();
    edit_manifest(&l, |m| m["layers"][0]["size"] = json!(1u64 << 50));
    let err = fails(&l).to_string();
    assert!(err.contains("at most"), "{err}");

    let (_d, l) = fresh_layout();
    let mut index = read_json(&l.join("index.json"));
    index["manifests"][0]["size"] = json!(100u64 << 20);
    fs::write(l.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let err = fails(&l).to_string();
    assert!(err.contains("at most"), "{err}");
}

#[test]
fn truncated_layout_archive() {
    let (d, l) = fresh_layout();
    let tar = d.path().join("layout.tar");
    pack(&l, &tar);
    let full = fs::read(&tar).unwrap();
    // Where the data of the entry that ends last ends (GNU tar pads the archive after it).
    let mut last_end = 0;
    for e in tar::Archive::new(&full[..]).entries().unwrap() {
        let e = e.unwrap();
        last_end = last_end.max(e.raw_file_position() + e.size());
    }
    // Cut inside the data of that entry, and in the middle of the archive.
    for cut in [last_end as usize - 10, full.len() / 2, 700] {
        let path = d.path().join(format!("cut-{cut}.tar"));
        fs::write(&path, &full[..cut]).unwrap();
        let err = fails(&path).to_string();
        assert!(
            err.contains(&path.display().to_string()),
            "cut at {cut}: {err}"
        );
    }
}

fn legacy_archive(dir: &Path, compression: Compression) -> PathBuf {
    let path = dir.join("legacy.tar");
    LayoutBuilder::new()
        .layer_dir(tree(dir, "a"), compression)
        .layer_dir(tree(dir, "b"), compression)
        .write_docker_archive(&path, "legacy:1", DockerArchiveFormat::Legacy)
        .unwrap();
    path
}

/// Edits the config of a legacy archive in place.
fn edit_legacy_config(path: &Path, mut edit: impl FnMut(&mut Value)) {
    edit_archive(path, |name, data| {
        if name.ends_with(".json") && name != "manifest.json" {
            let mut c: Value = serde_json::from_slice(data).unwrap();
            edit(&mut c);
            *data = serde_json::to_vec(&c).unwrap();
        }
    });
}

#[test]
fn docker_layer_that_does_not_match_its_diff_id() {
    for compression in [Compression::None, Compression::Gzip] {
        let d = tempfile::tempdir().unwrap();
        let path = legacy_archive(d.path(), compression);
        let wrong = oci_layers::Digest::of(Algorithm::Sha256, b"something else");
        edit_legacy_config(&path, |c| {
            c["rootfs"]["diff_ids"][1] = wrong.to_string().into()
        });
        let err = fails(&path);
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("layer 2/2")
                && msg.contains("/layer.tar")
                && msg.contains(&wrong.to_string()),
            "{msg}"
        );
    }
}

#[test]
fn docker_archive_problems() {
    // Layer count differs from diff_ids.
    let d = tempfile::tempdir().unwrap();
    let path = legacy_archive(d.path(), Compression::None);
    edit_legacy_config(&path, |c| {
        c["rootfs"]["diff_ids"].as_array_mut().unwrap().pop();
    });
    let err = fails(&path).to_string();
    assert!(
        err.contains("lists 2 layers but the config lists 1 diff_ids"),
        "{err}"
    );

    // A layer path that leaves the archive, and one that is not there.
    for (layer, want) in [
        ("../../etc/passwd", "not a path inside it"),
        ("nope/layer.tar", "is missing"),
    ] {
        let path = legacy_archive(d.path(), Compression::None);
        edit_archive(&path, |name, data| {
            if name == "manifest.json" {
                let mut m: Value = serde_json::from_slice(data).unwrap();
                m[0]["Layers"][0] = layer.into();
                *data = serde_json::to_vec(&m).unwrap();
            }
        });
        let err = fails(&path).to_string();
        assert!(err.contains(want), "{layer}: {err}");
    }

    // Malformed manifest.json.
    let path = legacy_archive(d.path(), Compression::None);
    edit_archive(&path, |name, data| {
        if name == "manifest.json" {
            *data = b"[{\"Config\": 1}]".to_vec();
        }
    });
    let err = fails(&path).to_string();
    assert!(err.contains("malformed manifest.json of"), "{err}");

    // Truncated inside the last layer.
    let path = legacy_archive(d.path(), Compression::None);
    let mut entries = archive_entries(&path);
    let last = entries
        .iter()
        .position(|(n, _)| n.ends_with("layer.tar"))
        .unwrap();
    let moved = entries.remove(last);
    entries.push(moved);
    write_archive(&path, &entries);
    let full = fs::read(&path).unwrap();
    fs::write(&path, &full[..full.len() - 1024 - 700]).unwrap();
    let err = fails(&path).to_string();
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn things_that_are_not_images() {
    let d = tempfile::tempdir().unwrap();
    let err = fails(&d.path().join("does-not-exist")).to_string();
    assert!(err.contains("does-not-exist"), "{err}");

    fs::write(d.path().join("readme"), b"hello").unwrap();
    let err = fails(d.path()).to_string();
    assert!(err.contains("is not an image"), "{err}");

    let tar = d.path().join("files.tar");
    write_archive(&tar, &[("hello.txt".to_string(), b"hi".to_vec())]);
    let err = fails(&tar).to_string();
    assert!(err.contains("is not an image"), "{err}");

    let gz = d.path().join("image.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &fs::read(&tar).unwrap()).unwrap();
    fs::write(&gz, enc.finish().unwrap()).unwrap();
    let err = fails(&gz).to_string();
    assert!(err.contains("decompress it first"), "{err}");

    let junk = d.path().join("junk");
    fs::write(&junk, vec![0x42u8; 3000]).unwrap();
    let err = fails(&junk).to_string();
    assert!(err.contains("junk"), "{err}");
}
