//! The cap on what one layer unpacks to: decompression bombs (and sparse entries declaring
//! huge holes) are refused once past `ExtractOptions::max_bytes` / `Store::with_max_layer_bytes`
//! and leave nothing behind, in the destination, the layer cache or the fallback's staging.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod extract_support;
mod rootfs_support;

use std::fs;
use std::path::Path;

use extract_support::{Sandbox, file, gzip, tar, zstd};
use oci_layers::extract::{DEFAULT_MAX_LAYER_BYTES, ExtractOptions, extract_layer};
use oci_layers::{Compression, Error, LayerCache, LayoutBuilder, Store};
use rootfs_support::fallback_staging;
use tar::{EntryType, Header};

const MIB: u64 = 1 << 20;
/// The bomb's one file: 64 MiB of zeros, which gzip makes about 64 KiB of.
const BOMB_FILE: u64 = 64 * MIB;
/// The limit the bombs are extracted with.
const LIMIT: u64 = MIB;

/// A tar of one file of `len` zeros.
fn zeros_tar(len: u64) -> Vec<u8> {
    tar(&[file("zeros", vec![0; len as usize])])
}

/// gzip at its best ratio, as a bomb's maker would use (its fast level makes 10 times more).
fn gzip_best(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, data).unwrap();
    enc.finish().unwrap()
}

fn with_limit(max_bytes: u64) -> ExtractOptions {
    ExtractOptions {
        max_bytes,
        ..ExtractOptions::default()
    }
}

/// The names in `dir` (empty if it does not exist).
fn names(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(read) => read
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn assert_over_limit(err: &Error, limit: u64) {
    let text = err.to_string();
    assert!(
        text.contains(&format!("unpacks to more than {limit} bytes")),
        "{text}"
    );
    assert!(text.contains("Store::with_max_layer_bytes"), "{text}");
}

#[test]
fn a_gzip_or_zstd_bomb_is_refused_before_any_of_it_is_written() {
    let tar = zeros_tar(BOMB_FILE);
    for (blob, compression) in [
        (gzip_best(&tar), Compression::Gzip),
        (zstd(&tar), Compression::Zstd),
    ] {
        assert!(blob.len() < 128 * 1024, "{} bytes", blob.len());
        let sb = Sandbox::new();
        let err = extract_layer(&blob[..], compression, &sb.dest, &with_limit(LIMIT))
            .expect_err("bomb accepted");
        assert!(matches!(err, Error::Entry { .. }), "{err:?}");
        assert!(err.to_string().contains("\"zeros\""), "{err}");
        assert_over_limit(&err, LIMIT);
        assert_eq!(names(&sb.dest), Vec::<String>::new(), "{compression:?}");
        sb.assert_untouched();
    }
}

#[test]
fn under_the_limit_the_same_layer_extracts() {
    let blob = gzip(&zeros_tar(BOMB_FILE));
    let sb = Sandbox::new();
    let out = extract_layer(
        &blob[..],
        Compression::Gzip,
        &sb.dest,
        &with_limit(128 * MIB),
    )
    .unwrap();
    assert_eq!(fs::metadata(sb.path("zeros")).unwrap().len(), BOMB_FILE);
    assert!(out.bytes > BOMB_FILE);
    assert_eq!(ExtractOptions::default().max_bytes, DEFAULT_MAX_LAYER_BYTES);
}

#[test]
fn the_stream_limit_counts_every_decompressed_byte() {
    // Files within the limit, but the tar stream (headers, padding, end blocks) over it by
    // one byte: the stream's own check stops it, as a stream failure.
    let tar = zeros_tar(4 * MIB);
    let blob = gzip(&tar);
    let len = tar.len() as u64;
    let sb = Sandbox::new();
    extract_layer(&blob[..], Compression::Gzip, &sb.dest, &with_limit(len)).unwrap();
    let sb = Sandbox::new();
    let err = extract_layer(&blob[..], Compression::Gzip, &sb.dest, &with_limit(len - 1))
        .expect_err("one byte over accepted");
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert_over_limit(&err, len - 1);
    sb.assert_untouched();
}

/// A tiny valid tar followed by 64 MiB of zeros.
fn trailing_zeros_tar() -> Vec<u8> {
    let mut tar = tar(&[file("small", "hello")]);
    tar.resize(tar.len() + BOMB_FILE as usize, 0);
    tar
}

#[test]
fn zeros_after_the_tar_end_are_a_bomb_too() {
    // A tiny valid tar followed by 64 MiB of zeros, which the extractor hashes (they are
    // part of the diff_id) but never writes: only the stream's limit stops it.
    let blob = gzip(&trailing_zeros_tar());
    let sb = Sandbox::new();
    let err = extract_layer(&blob[..], Compression::Gzip, &sb.dest, &with_limit(LIMIT))
        .expect_err("bomb accepted");
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert_over_limit(&err, LIMIT);
    sb.assert_untouched();
}

/// A GNU sparse entry `holes` of `real` bytes: all a hole but its last 512, which are data.
fn sparse_tar(real: u64) -> Vec<u8> {
    let octal = |field: &mut [u8; 12], n: u64| {
        field.copy_from_slice(format!("{n:011o}\0").as_bytes());
    };
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..5].copy_from_slice(b"holes");
    h.set_entry_type(EntryType::GNUSparse);
    h.set_size(512);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    let gnu = h.as_gnu_mut().unwrap();
    octal(&mut gnu.realsize, real);
    octal(&mut gnu.sparse[0].offset, real - 512);
    octal(&mut gnu.sparse[0].numbytes, 512);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(&[b'x'; 512]);
    out.extend_from_slice(&[0; 1024]);
    out
}

#[test]
fn a_sparse_entry_declaring_huge_holes_is_refused() {
    // Two KiB of tar that would write 8 MiB of zeros: the stream's limit never sees them.
    let tar = sparse_tar(8 * MIB);
    let sb = Sandbox::new();
    let err = extract_layer(&tar[..], Compression::None, &sb.dest, &with_limit(LIMIT))
        .expect_err("sparse bomb accepted");
    assert!(matches!(err, Error::Entry { .. }), "{err:?}");
    assert_over_limit(&err, LIMIT);
    assert_eq!(names(&sb.dest), Vec::<String>::new());
    sb.assert_untouched();

    // Within the limit the entry is a well-formed sparse file.
    let sb = Sandbox::new();
    extract_layer(&tar[..], Compression::None, &sb.dest, &with_limit(16 * MIB)).unwrap();
    let data = fs::read(sb.path("holes")).unwrap();
    assert_eq!(data.len() as u64, 8 * MIB);
    assert!(data.ends_with(&[b'x'; 512]));
}

/// An image of a small base layer and the `bomb` tar on top, imported into a store at
/// `home` with layers limited to `max_bytes`.
fn bomb_image(
    work: &Path,
    home: &Path,
    bomb: Vec<u8>,
    max_bytes: u64,
) -> (Store, oci_layers::Digest) {
    let layout = work.join("layout");
    let built = LayoutBuilder::new()
        .layer_tar(tar(&[file("base", "base layer")]), Compression::Gzip)
        .layer_tar(bomb, Compression::Gzip)
        .write_layout(&layout, "bomb")
        .unwrap();
    let store = Store::open(home).unwrap().with_max_layer_bytes(max_bytes);
    assert_eq!(store.max_layer_bytes(), max_bytes);
    store.import(&layout, Some("bomb"), false).unwrap();
    (store, built.layers[1].diff_id.clone())
}

/// Checks that the failed unpack into `dest` left nothing: no rootfs content, no fallback
/// staging beside it, no half layer (published or staged) in the cache.
fn assert_nothing_left(home: &Path, dest: &Path, bomb: &oci_layers::Digest) {
    assert_eq!(names(dest), Vec::<String>::new(), "rootfs content left");
    assert_eq!(
        fallback_staging(dest.parent().unwrap()),
        Vec::<String>::new()
    );
    let layers = home.join("layers");
    assert_eq!(names(&layers.join("tmp")), Vec::<String>::new());
    let cache = LayerCache::open(home).unwrap();
    assert!(!cache.layer_dir(bomb).exists(), "half layer published");
    assert!(!cache.list().unwrap().contains(bomb));
}

#[test]
fn store_unpack_refuses_the_bomb_in_the_cache_and_the_fallback() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let (store, bomb) = bomb_image(work.path(), &home, zeros_tar(BOMB_FILE), LIMIT);
    let dest = work.path().join("rootfs");
    let err = store
        .unpack("bomb", &dest, false)
        .expect_err("bomb unpacked");
    let text = err.to_string();
    assert!(text.contains("layer 2/2"), "the layer is not named: {text}");
    assert!(text.contains("fallback failed too"), "{text}");
    // Refused by the cache's extraction and by the fallback's, both with the store's limit.
    let refusals = text
        .matches(&format!("unpacks to more than {LIMIT} bytes"))
        .count();
    assert_eq!(refusals, 2, "{text}");
    assert_nothing_left(&home, &dest, &bomb);

    // The same store with the limit raised unpacks it.
    let store = store.with_max_layer_bytes(DEFAULT_MAX_LAYER_BYTES);
    let dest = work.path().join("rootfs-ok");
    store.unpack("bomb", &dest, false).unwrap();
    assert_eq!(fs::metadata(dest.join("zeros")).unwrap().len(), BOMB_FILE);
    assert_eq!(fs::read(dest.join("base")).unwrap(), b"base layer");
}

#[test]
fn the_fallback_alone_applies_the_limit() {
    // No usable layer cache (a file where its directory goes): only the fallback runs.
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let (store, _) = bomb_image(work.path(), &home, zeros_tar(BOMB_FILE), LIMIT);
    fs::write(home.join("layers"), b"in the way").unwrap();
    let dest = work.path().join("rootfs");
    let err = store
        .unpack("bomb", &dest, false)
        .expect_err("bomb unpacked");
    let text = err.to_string();
    assert!(text.contains("fallback failed too"), "{text}");
    assert!(text.contains("layer 2/2"), "{text}");
    assert!(
        text.contains(&format!("unpacks to more than {LIMIT} bytes")),
        "{text}"
    );
    assert_eq!(names(&dest), Vec::<String>::new());
    assert_eq!(fallback_staging(work.path()), Vec::<String>::new());
}

#[test]
fn store_unpack_stops_a_stream_bomb_and_caches_nothing() {
    // The bomb only the stream's limit sees (no file holds its bytes), through the cache.
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let (store, bomb) = bomb_image(work.path(), &home, trailing_zeros_tar(), LIMIT);
    let dest = work.path().join("rootfs");
    let err = store
        .unpack("bomb", &dest, false)
        .expect_err("bomb unpacked");
    let text = err.to_string();
    assert!(text.contains("layer 2/2"), "{text}");
    let refusals = text
        .matches(&format!("unpacks to more than {LIMIT} bytes"))
        .count();
    assert_eq!(refusals, 2, "{text}");
    assert_nothing_left(&home, &dest, &bomb);
}
