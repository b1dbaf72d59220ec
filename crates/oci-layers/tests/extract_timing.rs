//! Times `extract_layer` on the largest layer of the `cargo xtask bench rootfs` image, the
//! critical path of cold rootfs assembly. Ignored by default (it needs the cached bench image
//! and is only meaningful in a release build):
//! `cargo test --release -p oci-layers --test extract_timing -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use oci_layers::Compression;
use oci_layers::extract::{ExtractOptions, extract_layer};

/// Overrides the blob to time (a gzip layer); by default the bench image's largest layer.
const BLOB_VAR: &str = "EXTRACT_TIMING_BLOB";
/// Overrides the directory the layer is extracted under (default /var/tmp).
const DIR_VAR: &str = "EXTRACT_TIMING_DIR";
/// Set to keep the extracted tree (for a caller to delete later): on an ext4 without a
/// journal, the inodes of a tree deleted in the last 30 s slow down creating new ones, so
/// back-to-back runs that each delete their tree measure mostly that.
const KEEP_VAR: &str = "EXTRACT_TIMING_KEEP";
/// Digest of the bench image's largest layer (45 MB gzip, 134 MB tar).
const BENCH_LAYER: &str = "b32f15e70b0a43bd42ebbc188c1f353424c28d8267d2cce76abdefb3bf4389ef";

fn blob_path() -> PathBuf {
    if let Some(path) = std::env::var_os(BLOB_VAR) {
        return path.into();
    }
    let home = std::env::var_os("HOME").expect("HOME is not set");
    PathBuf::from(home)
        .join(".cache/boxlite-xtask/bench-image-v2/blobs/sha256")
        .join(BENCH_LAYER)
}

#[test]
#[ignore = "needs the cached bench image; run in release with --ignored --nocapture"]
fn time_largest_bench_layer() {
    let path = blob_path();
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask bench rootfs` once, or set {BLOB_VAR}",
        path.display()
    );
    let outer = tempfile::Builder::new()
        .prefix("extract-timing")
        .tempdir_in(std::env::var_os(DIR_VAR).unwrap_or_else(|| "/var/tmp".into()))
        .unwrap();
    let dest = outer.path().join("rootfs");
    std::fs::create_dir(&dest).unwrap();
    let blob = File::open(&path).unwrap();
    let start = Instant::now();
    let out = extract_layer(blob, Compression::Gzip, &dest, &ExtractOptions::default()).unwrap();
    let elapsed = start.elapsed();
    println!(
        "extract_layer: {:.3} s ({} MB tar, {} files, diff_id {})",
        elapsed.as_secs_f64(),
        out.bytes / 1_000_000,
        out.files,
        out.diff_id
    );
    assert!(
        out.files > 0 && out.bytes > 0,
        "the layer extracted to nothing"
    );
    // The diff_id must be one the image config lists (the config is a small blob beside it).
    let dir = path.parent().unwrap();
    let listed = std::fs::read_dir(dir).unwrap().any(|e| {
        let e = e.unwrap();
        e.metadata().unwrap().len() < 1_000_000
            && std::fs::read_to_string(e.path())
                .is_ok_and(|text| text.contains("diff_ids") && text.contains(out.diff_id.hex()))
    });
    assert!(
        listed || std::env::var_os(BLOB_VAR).is_some(),
        "diff_id {} is not in the image config",
        out.diff_id
    );
    if std::env::var_os(KEEP_VAR).is_some() {
        println!("kept {}", outer.keep().display());
    }
}

/// Extracts every gzip layer of the bench image at once, the way cold rootfs assembly
/// does (rayon, one directory each).
#[test]
#[ignore = "needs the cached bench image; run in release with --ignored --nocapture"]
fn time_all_bench_layers() {
    use rayon::prelude::*;
    let largest = blob_path();
    let dir = largest.parent().unwrap();
    let mut blobs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let mut magic = [0; 2];
            std::io::Read::read_exact(&mut File::open(p).unwrap(), &mut magic).is_ok()
                && magic == [0x1f, 0x8b]
        })
        .collect();
    blobs.sort();
    assert!(
        blobs.len() > 1,
        "no gzip layers beside {}",
        largest.display()
    );
    let outer = tempfile::Builder::new()
        .prefix("extract-timing")
        .tempdir_in(std::env::var_os(DIR_VAR).unwrap_or_else(|| "/var/tmp".into()))
        .unwrap();
    let start = Instant::now();
    let files: u64 = blobs
        .par_iter()
        .enumerate()
        .map(|(i, blob)| {
            let dest = outer.path().join(i.to_string());
            std::fs::create_dir(&dest).unwrap();
            let blob = File::open(blob).unwrap();
            let opts = ExtractOptions::default();
            extract_layer(blob, Compression::Gzip, &dest, &opts)
                .unwrap()
                .files
        })
        .sum();
    println!(
        "all layers: {:.3} s ({} layers, {files} files)",
        start.elapsed().as_secs_f64(),
        blobs.len()
    );
    assert!(files > 0, "the layers extracted to nothing");
    if std::env::var_os(KEEP_VAR).is_some() {
        println!("kept {}", outer.keep().display());
    }
}
