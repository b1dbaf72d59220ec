//! Bad input reaches assembly: a layer blob damaged in the store after import, and an image
//! whose config names the wrong diff_id. Assembly fails naming the layer, never marks the
//! destination complete, caches nothing wrong, and works again once the image is sound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rootfs_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use oci_layers::rootfs::Method;
use oci_layers::{Algorithm, Compression, Digest, LayerCache, LayoutBuilder, Store};
use rootfs_support::{
    COMPLETE_XATTR, PARTIAL_XATTR, T1, Tree, cache_staging, fallback_staging, patterned, snapshot,
    xattr,
};
use serde_json::Value;

/// A two-layer image whose second layer, compressed as `compression`, is large enough that
/// damage in its middle hits file data.
fn layout(work: &Path, compression: Compression) -> std::path::PathBuf {
    let l1 = Tree::new(work.join("l1"));
    l1.file("etc/os-release", "ID=bad\n", 0o644).stamp(T1);
    let l2 = Tree::new(work.join("l2"));
    l2.file("data/blob", patterned(200_000), 0o644)
        .file("data/small", "small\n", 0o644)
        .stamp(T1);
    let layout = work.join("layout");
    LayoutBuilder::new()
        .layer_dir(&l1.root, Compression::Gzip)
        .layer_dir(&l2.root, compression)
        .write_layout(&layout, "bad")
        .unwrap();
    layout
}

/// Inverts 16 bytes in the middle of `path`, a read-only blob.
fn flip_bytes(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b = !*b;
    }
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o444)).unwrap();
}

/// Checks what a failed assembly leaves: no completion record (the partial mark stays, so the
/// next run starts over), no staging anywhere, and nothing cached under `bad`.
fn check_failed_cleanly(home: &Path, dest: &Path, bad: &Digest) {
    assert_eq!(xattr(dest, COMPLETE_XATTR), None, "never marked complete");
    assert!(xattr(dest, PARTIAL_XATTR).is_some(), "left marked partial");
    assert_eq!(cache_staging(home), Vec::<String>::new());
    assert_eq!(
        fallback_staging(dest.parent().unwrap()),
        Vec::<String>::new()
    );
    let cached = LayerCache::open(home).unwrap().list().unwrap();
    assert!(!cached.contains(bad), "{cached:?}");
}

#[test]
fn a_layer_blob_damaged_after_import_is_named_and_nothing_is_marked_complete() {
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let work = tempfile::tempdir().unwrap();
        let layout = layout(work.path(), compression);
        let home = work.path().join("home");
        let store = Store::open(&home).unwrap();
        let image = store.import(&layout, Some("bad"), false).unwrap();
        let layer = &image.layers[1];
        flip_bytes(&store.blob_path(&layer.digest));

        let dest = work.path().join("rootfs");
        let err = store.unpack("bad", &dest, false).unwrap_err().to_string();
        assert!(
            err.contains("image bad layer 2/2"),
            "{compression:?}: {err}"
        );
        assert!(
            err.contains(&layer.digest.to_string()),
            "{compression:?}: {err}"
        );
        check_failed_cleanly(&home, &dest, &layer.diff_id);

        // A sound copy of the image brings it back; the half-done destination is redone.
        store.remove("bad").unwrap();
        store.import(&layout, Some("bad"), false).unwrap();
        let report = store.unpack("bad", &dest, false).unwrap();
        assert_eq!(report.method, Method::CopyStack, "{compression:?}");
        assert_eq!(report.extracted, 1, "layer 1 was cached by the failed run");
        assert_eq!(
            fs::read(dest.join("data/blob")).unwrap(),
            patterned(200_000)
        );
        assert!(xattr(&dest, COMPLETE_XATTR).is_some());
    }
}

/// Fails today: `Store::put_blob` keeps a stored blob of the right size without re-hashing it,
/// so importing the sound image again leaves the damaged blob in place; removing the image
/// first (the test above) is what works.
#[test]
#[ignore = "store: re-import keeps a damaged blob (put_blob trusts an existing blob by size)"]
fn reimporting_repairs_a_damaged_layer_blob() {
    let work = tempfile::tempdir().unwrap();
    let layout = layout(work.path(), Compression::Gzip);
    let home = work.path().join("home");
    let store = Store::open(&home).unwrap();
    let image = store.import(&layout, Some("bad"), false).unwrap();
    flip_bytes(&store.blob_path(&image.layers[1].digest));
    let dest = work.path().join("rootfs");
    store.unpack("bad", &dest, false).unwrap_err();

    store.import(&layout, Some("bad"), false).unwrap();
    let report = store.unpack("bad", &dest, false);
    assert!(report.is_ok(), "{report:?}");
}

/// Rewrites the layout's config so that layer `i` claims diff_id `wrong`, re-linking manifest
/// and index to the new blobs.
fn claim_diff_id(layout: &Path, i: usize, wrong: &Digest) {
    let blob = |d: &str| layout.join("blobs").join(d.replacen(':', "/", 1));
    let put = |v: &Value| -> (String, usize) {
        let bytes = serde_json::to_vec(v).unwrap();
        let digest = Digest::of(Algorithm::Sha256, &bytes).to_string();
        fs::write(blob(&digest), &bytes).unwrap();
        (digest, bytes.len())
    };
    let read = |p: &Path| -> Value { serde_json::from_slice(&fs::read(p).unwrap()).unwrap() };

    let mut index = read(&layout.join("index.json"));
    let mut manifest = read(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut config = read(&blob(manifest["config"]["digest"].as_str().unwrap()));
    config["rootfs"]["diff_ids"][i] = Value::from(wrong.to_string());
    let (digest, size) = put(&config);
    manifest["config"]["digest"] = Value::from(digest);
    manifest["config"]["size"] = Value::from(size);
    let (digest, size) = put(&manifest);
    index["manifests"][0]["digest"] = Value::from(digest);
    index["manifests"][0]["size"] = Value::from(size);
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_wrong_diff_id_is_named_and_nothing_is_marked_complete() {
    let work = tempfile::tempdir().unwrap();
    let layout = layout(work.path(), Compression::Zstd);
    let wrong = Digest::of(Algorithm::Sha256, b"some other layer");
    claim_diff_id(&layout, 1, &wrong);
    let home = work.path().join("home");
    let store = Store::open(&home).unwrap();
    // An OCI layout import does not decompress layers, so the lie reaches assembly.
    let image = store.import(&layout, Some("liar"), false).unwrap();
    assert_eq!(image.layers[1].diff_id, wrong);

    let dest = work.path().join("rootfs");
    let err = store.unpack("liar", &dest, false).unwrap_err().to_string();
    assert!(err.contains("image liar layer 2/2"), "{err}");
    assert!(err.contains("diff_id"), "{err}");
    assert!(err.contains(&wrong.to_string()), "{err}");
    check_failed_cleanly(&home, &dest, &wrong);
    assert_eq!(
        snapshot(&dest).len(),
        0,
        "nothing of the image is left in the destination"
    );

    // The honest image assembles into the same destination afterwards.
    let honest = work.path().join("honest");
    fs::create_dir(&honest).unwrap();
    let honest_layout = self::layout(&honest, Compression::Zstd);
    store.import(&honest_layout, Some("honest"), false).unwrap();
    let report = store.unpack("honest", &dest, false).unwrap();
    assert_eq!(report.method, Method::CopyStack);
    assert!(xattr(&dest, COMPLETE_XATTR).is_some());
    assert!(
        !LayerCache::open(&home)
            .unwrap()
            .list()
            .unwrap()
            .contains(&wrong)
    );
}
