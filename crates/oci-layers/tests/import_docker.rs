//! Importing `docker save` archives: the legacy layout (layers named by path, plain or
//! compressed) and the newer one that embeds an OCI layout.

// Helpers here set up fixtures for the tests; a failed step should panic like a test does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod import_support;

use import_support::*;
use oci_layers::builder::DockerArchiveFormat;
use oci_layers::spec::{ANNOTATION_REF_NAME, OCI_LAYER_GZIP, OCI_LAYER_TAR};
use oci_layers::{Algorithm, Compression, Digest, LayoutBuilder};
use serde_json::Value;

fn plain_image(root: &std::path::Path) -> LayoutBuilder {
    LayoutBuilder::new()
        .layer_dir(tree(root, "base"), Compression::None)
        .layer_dir(tree(root, "app"), Compression::None)
        .entrypoint(["/app"])
        .user("nobody")
}

#[test]
fn imports_a_legacy_archive_with_plain_layers() {
    let h = home();
    let builder = plain_image(h.dir.path());
    let path = h.dir.path().join("legacy.tar");
    let built = builder
        .write_docker_archive(&path, "app:v1", DockerArchiveFormat::Legacy)
        .unwrap();
    // It really is the legacy layout: layers by path, manifest.json, no OCI files.
    let names: Vec<String> = archive_entries(&path).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"manifest.json".to_string()));
    assert!(names.iter().any(|n| n.ends_with("/layer.tar")));
    assert!(
        !names
            .iter()
            .any(|n| n == "oci-layout" || n.starts_with("blobs/"))
    );

    let record = h.store.import(&path, None, false).unwrap();
    assert_eq!(record.name, "app:v1");
    assert_eq!(record.config_digest, built.config.digest);
    for (l, b) in record.layers.iter().zip(&built.layers) {
        assert_eq!(
            l.digest, b.diff_id,
            "a plain layer's blob digest is its diff_id"
        );
        assert_eq!(l.diff_id, b.diff_id);
        assert_eq!(l.media_type, OCI_LAYER_TAR);
        assert!(h.store.has_blob(&l.digest));
    }
    let image = h.store.get("app:v1").unwrap();
    assert_eq!(
        image.config.config.entrypoint.as_deref(),
        Some(&["/app".to_string()][..])
    );
    assert_eq!(image.config.config.user, "nobody");
    assert_eq!(image.manifest.config.digest, built.config.digest);
    // The synthesized manifest is stored and is what the record names.
    let bytes = h
        .store
        .read_blob(&record.manifest_digest, 1 << 20, "m")
        .unwrap();
    assert_eq!(
        Digest::of(Algorithm::Sha256, &bytes),
        record.manifest_digest
    );
    // Importing again changes nothing.
    let again = h.store.import(&path, None, false).unwrap();
    assert_eq!(again.manifest_digest, record.manifest_digest);
    assert_eq!(h.store.blobs().unwrap().len(), 4);
    assert!(h.tmp_files().is_empty());
}

#[test]
fn imports_compressed_layers_in_a_legacy_archive() {
    let h = home();
    let builder = LayoutBuilder::new()
        .layer_dir(tree(h.dir.path(), "gz"), Compression::Gzip)
        .layer_dir(tree(h.dir.path(), "zst"), Compression::Zstd);
    let path = h.dir.path().join("legacy.tar");
    let built = builder
        .write_docker_archive(&path, "comp", DockerArchiveFormat::Legacy)
        .unwrap();
    let record = h.store.import(&path, None, false).unwrap();
    assert_eq!(record.layers[0].media_type, OCI_LAYER_GZIP);
    assert_eq!(record.layers[1].compression().unwrap(), Compression::Zstd);
    for (l, b) in record.layers.iter().zip(&built.layers) {
        assert_eq!(l.digest, b.descriptor.digest);
        assert_eq!(l.diff_id, b.diff_id);
    }
}

#[test]
fn imports_the_newer_archive_with_an_oci_layout() {
    let h = home();
    let builder = plain_image(h.dir.path());
    let path = h.dir.path().join("new.tar");
    let built = builder
        .write_docker_archive(
            &path,
            "docker.io/library/app:v2",
            DockerArchiveFormat::OciLayout,
        )
        .unwrap();
    // Docker writes only the tag as the ref name; the full name comes from RepoTags.
    edit_archive(&path, |name, data| {
        if name == "index.json" {
            let mut index: Value = serde_json::from_slice(data).unwrap();
            index["manifests"][0]["annotations"][ANNOTATION_REF_NAME] = "v2".into();
            *data = serde_json::to_vec(&index).unwrap();
        }
    });
    let record = h.store.import(&path, None, false).unwrap();
    assert_eq!(record.name, "docker.io/library/app:v2");
    assert_eq!(record.manifest_digest, built.manifest.digest);

    // The same image saved the legacy way has the same id (its config digest).
    let legacy = h.dir.path().join("legacy.tar");
    builder
        .write_docker_archive(&legacy, "legacy:v2", DockerArchiveFormat::Legacy)
        .unwrap();
    let other = h.store.import(&legacy, None, false).unwrap();
    assert_eq!(other.short_id(), record.short_id());
    assert_eq!(other.layers, record.layers);
}

#[test]
fn several_images_in_one_archive_are_chosen_by_tag() {
    let h = home();
    let a = h.dir.path().join("a.tar");
    let b = h.dir.path().join("b.tar");
    plain_image(h.dir.path())
        .write_docker_archive(&a, "one:1", DockerArchiveFormat::Legacy)
        .unwrap();
    LayoutBuilder::new()
        .layer_dir(tree(h.dir.path(), "other"), Compression::None)
        .write_docker_archive(&b, "two:2", DockerArchiveFormat::Legacy)
        .unwrap();
    // Merge them the way `docker save one:1 two:2` would.
    let mut manifest: Vec<Value> = Vec::new();
    let mut entries = Vec::new();
    for path in [&a, &b] {
        for (name, data) in archive_entries(path) {
            if name == "manifest.json" {
                let list: Vec<Value> = serde_json::from_slice(&data).unwrap();
                manifest.extend(list);
            } else {
                entries.push((name, data));
            }
        }
    }
    entries.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    ));
    let both = h.dir.path().join("both.tar");
    write_archive(&both, &entries);

    let err = h.store.import(&both, None, false).unwrap_err().to_string();
    assert!(err.contains("holds 2 images (one:1, two:2)"), "{err}");
    h.assert_empty();
    assert_eq!(
        h.store.import(&both, Some("two:2"), false).unwrap().name,
        "two:2"
    );
    assert_eq!(
        h.store.import(&both, Some("one:1"), false).unwrap().name,
        "one:1"
    );
}
