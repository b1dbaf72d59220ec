//! Fixtures shared by the import and store tests: real layouts and archives written by
//! `LayoutBuilder`, and helpers that edit them the way a broken or hostile image would.

// Test fixtures: a failed setup step should panic loudly, like the tests that use them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use oci_layers::builder::DockerArchiveFormat;
use oci_layers::spec::{ANNOTATION_REF_NAME, OCI_MANIFEST};
use oci_layers::{Algorithm, Compression, Digest, LayoutBuilder, Store};
use serde_json::Value;

/// A temporary home with an opened store.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

pub fn home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    Home { dir, store }
}

impl Home {
    /// Files left in the store's temporary directory.
    pub fn tmp_files(&self) -> Vec<PathBuf> {
        fs::read_dir(self.store.tmp_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// Asserts the store holds no image, no blob and no temporary file.
    pub fn assert_empty(&self) {
        assert!(
            self.store.list().unwrap().is_empty(),
            "an image record was left"
        );
        assert!(
            self.tmp_files().is_empty(),
            "temp files left: {:?}",
            self.tmp_files()
        );
        assert!(
            self.store.blobs().unwrap().is_empty(),
            "blobs left: {:?}",
            self.store.blobs().unwrap()
        );
    }
}

/// A directory tree with a few files, distinct per `tag`.
pub fn tree(root: &Path, tag: &str) -> PathBuf {
    let dir = root.join(format!("tree-{tag}"));
    if dir.exists() {
        return dir;
    }
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("etc/os-release"), format!("ID={tag}\n")).unwrap();
    fs::write(dir.join(format!("file-{tag}")), tag.repeat(1000)).unwrap();
    std::os::unix::fs::symlink("etc/os-release", dir.join("link")).unwrap();
    dir
}

/// A three-layer builder: gzip, zstd and plain tar layers.
pub fn three_layers(root: &Path) -> LayoutBuilder {
    LayoutBuilder::new()
        .layer_dir(tree(root, "base"), Compression::Gzip)
        .layer_dir(tree(root, "mid"), Compression::Zstd)
        .layer_dir(tree(root, "top"), Compression::None)
        .env(["PATH=/usr/bin:/bin"])
        .cmd(["/bin/sh"])
        .working_dir("/root")
}

/// Writes `builder` as an OCI layout at `root/name`.
pub fn layout(root: &Path, name: &str, builder: &LayoutBuilder, ref_name: &str) -> PathBuf {
    let dir = root.join(name);
    builder.write_layout(&dir, ref_name).unwrap();
    dir
}

/// Writes `builder` as a docker archive at `root/name`.
pub fn docker_archive(
    root: &Path,
    name: &str,
    builder: &LayoutBuilder,
    tag: &str,
    format: DockerArchiveFormat,
) -> PathBuf {
    let path = root.join(name);
    builder.write_docker_archive(&path, tag, format).unwrap();
    path
}

/// Packs the directory `dir` into a tar at `out` with the system tar (as `tar -C dir -cf out .`).
pub fn pack(dir: &Path, out: &Path) {
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn blob_path(layout: &Path, d: &Digest) -> PathBuf {
    layout
        .join("blobs")
        .join(d.algorithm().name())
        .join(d.hex())
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Writes `bytes` as a blob of the layout; returns its digest.
pub fn write_blob(layout: &Path, alg: Algorithm, bytes: &[u8]) -> Digest {
    let d = Digest::of(alg, bytes);
    fs::create_dir_all(layout.join("blobs").join(alg.name())).unwrap();
    fs::write(blob_path(layout, &d), bytes).unwrap();
    d
}

/// The manifest of the first index entry, and that entry's position.
pub fn manifest(layout: &Path) -> Value {
    let index = read_json(&layout.join("index.json"));
    let d: Digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    read_json(&blob_path(layout, &d))
}

/// Replaces the first manifest by `edit(manifest)`, keeping every digest consistent.
pub fn edit_manifest(layout: &Path, edit: impl FnOnce(&mut Value)) {
    let mut m = manifest(layout);
    edit(&mut m);
    set_manifest_bytes(layout, &serde_json::to_vec(&m).unwrap());
}

/// Makes the first index entry point at a manifest blob with exactly `bytes`.
pub fn set_manifest_bytes(layout: &Path, bytes: &[u8]) {
    let mut index = read_json(&layout.join("index.json"));
    let alg: Digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let d = write_blob(layout, alg.algorithm(), bytes);
    index["manifests"][0]["digest"] = Value::String(d.to_string());
    index["manifests"][0]["size"] = Value::from(bytes.len());
    index["manifests"][0]["mediaType"] = Value::String(OCI_MANIFEST.into());
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// Replaces the config by `edit(config)`, rewriting the manifest to match.
pub fn edit_config(layout: &Path, edit: impl FnOnce(&mut Value)) {
    let m = manifest(layout);
    let d: Digest = m["config"]["digest"].as_str().unwrap().parse().unwrap();
    let mut c = read_json(&blob_path(layout, &d));
    edit(&mut c);
    let bytes = serde_json::to_vec(&c).unwrap();
    let nd = write_blob(layout, d.algorithm(), &bytes);
    edit_manifest(layout, |m| {
        m["config"]["digest"] = Value::String(nd.to_string());
        m["config"]["size"] = Value::from(bytes.len());
    });
}

/// The digest of layer `i` of the first manifest.
pub fn layer_digest(layout: &Path, i: usize) -> Digest {
    manifest(layout)["layers"][i]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The ref names in the layout's index.json.
pub fn ref_names(layout: &Path) -> Vec<String> {
    read_json(&layout.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            m["annotations"][ANNOTATION_REF_NAME]
                .as_str()
                .map(String::from)
        })
        .collect()
}

/// The regular files of a tar archive, in order.
pub fn archive_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = fs::read(path).unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push((name, data));
    }
    out
}

/// Writes regular files as a tar archive.
pub fn write_archive(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    fs::write(path, b.into_inner().unwrap()).unwrap();
}

/// Rewrites the archive at `path`: `edit` may change any file's bytes.
pub fn edit_archive(path: &Path, mut edit: impl FnMut(&str, &mut Vec<u8>)) {
    let mut entries = archive_entries(path);
    for (name, data) in &mut entries {
        edit(name, data);
    }
    write_archive(path, &entries);
}
