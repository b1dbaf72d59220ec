//! Listing, inspecting and removing images, garbage collection of blobs, and concurrent use
//! of one store.

// Helpers here set up fixtures for the tests; a failed step should panic like a test does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod import_support;

use std::fs;

use import_support::*;
use oci_layers::{Algorithm, Compression, Digest, Error, GcReport, LayoutBuilder, Progress};

/// Two images that share their gzip base layer.
fn two_images(h: &Home) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = h.dir.path();
    let base = tree(root, "shared-base");
    let a = LayoutBuilder::new()
        .layer_dir(&base, Compression::Gzip)
        .layer_dir(tree(root, "a"), Compression::Zstd);
    let b = LayoutBuilder::new()
        .layer_dir(&base, Compression::Gzip)
        .layer_dir(tree(root, "b"), Compression::None);
    (layout(root, "a", &a, "a:1"), layout(root, "b", &b, "b:1"))
}

#[test]
fn shared_blob_survives_removal_of_one_image() {
    let h = home();
    let (a, b) = two_images(&h);
    let ra = h.store.import(&a, None, false).unwrap();
    let rb = h.store.import(&b, None, false).unwrap();
    assert_eq!(
        ra.layers[0].digest, rb.layers[0].digest,
        "the base layer is shared"
    );
    assert_eq!(h.store.blobs().unwrap().len(), 7);
    let names: Vec<String> = h
        .store
        .list()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a:1", "b:1"]);

    let report = h.store.remove("a:1").unwrap();
    // a's manifest, config and top layer go; the shared base stays for b.
    assert_eq!(report.blobs_removed, 3);
    assert_eq!(report.bytes_freed, ra.size - ra.layers[0].size);
    assert!(h.store.has_blob(&ra.layers[0].digest));
    for d in [&ra.manifest_digest, &ra.config_digest, &ra.layers[1].digest] {
        assert!(!h.store.has_blob(d), "{d} should be collected");
    }
    assert!(matches!(
        h.store.get("a:1"),
        Err(Error::UnknownImage { .. })
    ));
    // b is whole and readable.
    let image = h.store.get("b:1").unwrap();
    assert!(image.record.blobs().all(|d| h.store.has_blob(d)));

    h.store.remove("b:1").unwrap();
    assert!(h.store.blobs().unwrap().is_empty());
    assert!(h.store.list().unwrap().is_empty());
}

#[test]
fn remove_unknown_and_ambiguous() {
    let h = home();
    let err = h.store.remove("ghost").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no image named ghost; see `boxlite image ls`"
    );
    let (a, _) = two_images(&h);
    let r = h.store.import(&a, Some("first"), false).unwrap();
    h.store.import(&a, Some("second"), false).unwrap();
    // Two names for one image: removing by id is refused, by name removes only that name.
    let err = h.store.remove(r.short_id()).unwrap_err().to_string();
    assert!(err.contains("several names (first, second)"), "{err}");
    assert_eq!(h.store.remove("first").unwrap(), GcReport::default());
    assert_eq!(h.store.get(r.short_id()).unwrap().record.name, "second");
    let report = h.store.remove(r.short_id()).unwrap();
    assert_eq!(report.blobs_removed, 4);
    assert!(h.store.blobs().unwrap().is_empty());
}

#[test]
fn moving_a_name_collects_the_old_image() {
    let h = home();
    let (a, b) = two_images(&h);
    let ra = h.store.import(&a, Some("app"), false).unwrap();
    let rb = h.store.import(&b, Some("app"), false).unwrap();
    assert_eq!(h.store.list().unwrap(), std::slice::from_ref(&rb));
    assert!(
        !h.store.has_blob(&ra.layers[1].digest),
        "the old image's own layer is collected"
    );
    assert!(
        h.store.has_blob(&ra.layers[0].digest),
        "the shared base stays"
    );
    assert_eq!(h.store.blobs().unwrap().len(), 4);
}

#[test]
fn failed_import_keeps_existing_images_intact() {
    let h = home();
    let (a, b) = two_images(&h);
    let ra = h.store.import(&a, None, false).unwrap();
    // b shares a's base; corrupt b's own layer so its import fails after storing the base.
    let victim = layer_digest(&b, 1);
    let mut bytes = fs::read(blob_path(&b, &victim)).unwrap();
    bytes[600] ^= 1;
    fs::write(blob_path(&b, &victim), bytes).unwrap();
    assert!(h.store.import(&b, None, false).is_err());
    assert_eq!(h.store.list().unwrap(), std::slice::from_ref(&ra));
    let mut expected: Vec<Digest> = ra.blobs().cloned().collect();
    expected.sort();
    assert_eq!(h.store.blobs().unwrap(), expected);
    h.store.get("a:1").unwrap();
    assert!(h.tmp_files().is_empty());
}

#[test]
fn gc_removes_unreferenced_blobs_and_leftovers() {
    let h = home();
    let (a, _) = two_images(&h);
    let r = h.store.import(&a, None, false).unwrap();
    let stray = Digest::of(Algorithm::Sha256, b"orphan");
    h.store
        .put_blob(
            &b"orphan"[..],
            &stray,
            Some(6),
            "orphan",
            &Progress::hidden(),
        )
        .unwrap();
    fs::write(h.store.tmp_dir().join(".blob-crashed"), b"partial").unwrap();
    let report = h.store.gc().unwrap();
    assert_eq!(
        report,
        GcReport {
            blobs_removed: 1,
            bytes_freed: 6
        }
    );
    assert!(!h.store.has_blob(&stray));
    assert!(h.tmp_files().is_empty());
    assert!(r.blobs().all(|d| h.store.has_blob(d)));
}

#[test]
fn concurrent_imports_and_removals() {
    let h = home();
    let (a, b) = two_images(&h);
    std::thread::scope(|s| {
        for i in 0..4 {
            let (store, a) = (&h.store, &a);
            s.spawn(move || {
                store.import(a, Some(&format!("a{i}")), false).unwrap();
            });
        }
        let (store, b) = (&h.store, &b);
        s.spawn(move || {
            for _ in 0..3 {
                store.import(b, Some("b"), false).unwrap();
                store.remove("b").unwrap();
            }
        });
    });
    let names: Vec<String> = h
        .store
        .list()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a0", "a1", "a2", "a3"]);
    for name in names {
        let image = h.store.get(&name).unwrap();
        for d in image.record.blobs() {
            // Every blob is present and intact.
            h.store.read_blob(d, u64::MAX, "blob").unwrap();
        }
    }
    assert_eq!(h.store.blobs().unwrap().len(), 4);
    assert!(h.tmp_files().is_empty());
}

#[test]
fn a_damaged_record_is_named() {
    let h = home();
    let (a, _) = two_images(&h);
    h.store.import(&a, None, false).unwrap();
    let refs = h.store.root().join("refs");
    let record = fs::read_dir(&refs).unwrap().next().unwrap().unwrap().path();
    fs::write(&record, b"{").unwrap();
    let err = h.store.list().unwrap_err().to_string();
    assert!(
        err.contains(&record.display().to_string()) && err.contains("remove the file"),
        "{err}"
    );
}
