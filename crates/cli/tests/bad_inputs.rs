//! `boxlite image import` of broken or wrong inputs: each fails with one error line that names
//! the input, and leaves neither an image nor stray blobs behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Env, demo_archive, demo_layout, layout_blob};
use oci_layers::builder::DockerArchiveFormat;
use oci_layers::{Algorithm, Digest};

/// Imports `path`, expects a clean failure mentioning `path` and every one of `needles`, and
/// checks that the home holds no image and no blob afterwards. Returns the error line.
#[track_caller]
fn assert_rejected(env: &Env, path: &Path, needles: &[&str]) -> String {
    let shown = path.to_str().unwrap();
    let run = env.run(&["image", "import", shown]);
    let mut all = vec![shown];
    all.extend_from_slice(needles);
    let line = run.fails_with(&all).to_string();
    println!("{line}");
    assert!(env.names().is_empty(), "{:?} after {line}", env.names());
    assert!(
        env.blobs().is_empty(),
        "blobs left by a failed import: {:?}",
        env.blobs()
    );
    line
}

#[test]
fn a_path_that_does_not_exist() {
    let env = Env::new();
    assert_rejected(&env, &env.path("no-such-image"), &["No such file"]);
}

#[test]
fn a_directory_that_is_not_an_image() {
    let env = Env::new();
    let dir = env.path("photos");
    common::write_files(&dir, &[("cat.jpg", "meow")]);
    assert_rejected(
        &env,
        &dir,
        &["is not an image", "oci-layout", "manifest.json"],
    );
}

#[test]
fn a_file_that_is_not_an_archive() {
    let env = Env::new();
    let file = env.path("notes.txt");
    fs::write(&file, "just some text, not a tar archive\n").unwrap();
    assert_rejected(&env, &file, &[]);
}

#[test]
fn a_compressed_archive() {
    let env = Env::new();
    let (archive, _) = demo_archive(&env, "image.tar", "demo:1", DockerArchiveFormat::Legacy);
    let status = Command::new("gzip").arg(&archive).status().unwrap();
    assert!(status.success());
    assert_rejected(&env, &env.path("image.tar.gz"), &["decompress it first"]);
}

#[test]
fn a_layout_with_a_missing_layer_blob() {
    let env = Env::new();
    let (layout, built) = demo_layout(&env, "layout", "demo:1");
    let layer = &built.layers[1].descriptor.digest;
    fs::remove_file(layout_blob(&layout, layer)).unwrap();
    assert_rejected(&env, &layout, &["layer 2/2", &layer.to_string(), "missing"]);
}

#[test]
fn a_layout_with_a_missing_config_blob() {
    let env = Env::new();
    let (layout, built) = demo_layout(&env, "layout", "demo:1");
    fs::remove_file(layout_blob(&layout, &built.config.digest)).unwrap();
    assert_rejected(
        &env,
        &layout,
        &["config", &built.config.digest.to_string(), "missing"],
    );
}

#[test]
fn a_layout_with_a_corrupted_layer_blob() {
    let env = Env::new();
    let (layout, built) = demo_layout(&env, "layout", "demo:1");
    // The second layer, so the first is stored before the damage is found and must be
    // collected again.
    let layer = &built.layers[1].descriptor.digest;
    let path = layout_blob(&layout, layer);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let actual = Digest::of(Algorithm::Sha256, &bytes);
    assert_rejected(
        &env,
        &layout,
        &[
            "digest mismatch",
            "layer 2/2",
            &layer.to_string(),
            &actual.to_string(),
        ],
    );
}

#[test]
fn a_layout_with_a_malformed_index() {
    let env = Env::new();
    let (layout, _) = demo_layout(&env, "layout", "demo:1");
    fs::write(
        layout.join("index.json"),
        "{\"schemaVersion\": 2, \"manifests\": [",
    )
    .unwrap();
    assert_rejected(&env, &layout, &["malformed", "index.json"]);
}

#[test]
fn a_layout_without_an_index() {
    let env = Env::new();
    let (layout, _) = demo_layout(&env, "layout", "demo:1");
    fs::remove_file(layout.join("index.json")).unwrap();
    assert_rejected(&env, &layout, &["index.json"]);
}

#[test]
fn a_layout_with_an_unknown_layer_media_type() {
    let env = Env::new();
    let (layout, built) = demo_layout(&env, "layout", "demo:1");
    let bogus = "application/vnd.example.layer.v1.tar+lz4";
    rewrite_manifest(&layout, &built.manifest.digest, |m| {
        m["layers"][1]["mediaType"] = bogus.into();
    });
    assert_rejected(&env, &layout, &["unsupported", "layer", bogus]);
}

/// One regular file in a tar archive: its name, where its header and data start, its size.
struct TarFile {
    name: String,
    header: u64,
    data: u64,
    size: u64,
}

fn tar_files(archive: &Path) -> Vec<TarFile> {
    let file = fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(file);
    tar.entries_with_seek()
        .unwrap()
        .map(Result::unwrap)
        .filter(|e| e.header().entry_type() == tar::EntryType::Regular)
        .map(|e| TarFile {
            name: e.path().unwrap().to_str().unwrap().to_string(),
            header: e.raw_header_position(),
            data: e.raw_file_position(),
            size: e.size(),
        })
        .collect()
}

#[test]
fn truncated_docker_archives() {
    for format in [DockerArchiveFormat::Legacy, DockerArchiveFormat::OciLayout] {
        let env = Env::new();
        let (archive, _) = demo_archive(&env, "image.tar", "demo:1", format);
        let bytes = fs::read(&archive).unwrap();
        let files = tar_files(&archive);
        assert!(files.len() >= 4, "{format:?}: {} files", files.len());
        for f in &files {
            // Cut inside the file's data: the archive says where it should end.
            if f.size > 1 {
                fs::write(&archive, &bytes[..(f.data + f.size / 2) as usize]).unwrap();
                let line = assert_rejected(&env, &archive, &["truncated", &f.name]);
                assert!(!line.contains("panicked"), "{line}");
            }
            if f.header > 0 {
                // Cut inside the file's header block.
                fs::write(&archive, &bytes[..(f.header + 100) as usize]).unwrap();
                assert_rejected(&env, &archive, &[]);
                // Cut just before it: the tar itself looks whole, but the image is not —
                // except that the newer format's manifest.json only adds tags.
                if format == DockerArchiveFormat::OciLayout && f.name == "manifest.json" {
                    continue;
                }
                fs::write(&archive, &bytes[..f.header as usize]).unwrap();
                assert_rejected(&env, &archive, &[]);
            }
        }
    }
}

/// Replaces the layout's manifest `digest` by `edit` of it, and points index.json at the new
/// manifest, so the layout stays consistent apart from the edit.
fn rewrite_manifest(layout: &Path, digest: &Digest, edit: impl FnOnce(&mut serde_json::Value)) {
    let old_path = layout_blob(layout, digest);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&old_path).unwrap()).unwrap();
    edit(&mut manifest);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let new = Digest::of(Algorithm::Sha256, &bytes);
    fs::write(layout_blob(layout, &new), &bytes).unwrap();
    fs::remove_file(old_path).unwrap();

    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let entry = &mut index["manifests"][0];
    assert_eq!(entry["digest"], digest.to_string());
    entry["digest"] = new.to_string().into();
    entry["size"] = bytes.len().into();
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}
