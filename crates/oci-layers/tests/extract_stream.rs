//! Broken layer streams: truncated or corrupt compression, garbage, truncated tars.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod extract_support;

use extract_support::{Sandbox, dir, file, gzip, tar, zstd};
use oci_layers::extract::{ExtractOptions, extract_layer};
use oci_layers::{Algorithm, Compression, Digest, Error};

fn layer() -> Vec<u8> {
    let data: Vec<u8> = (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect();
    tar(&[dir("a"), file("a/big", data), file("a/small", "s")])
}

fn fails(blob: &[u8], compression: Compression, want: &[&str]) {
    let sb = Sandbox::new();
    let err = extract_layer(blob, compression, &sb.dest, &ExtractOptions::default())
        .expect_err("broken stream accepted");
    assert!(
        matches!(err, Error::Invalid(_) | Error::Entry { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    for w in want {
        assert!(text.contains(w), "{text:?} lacks {w:?}");
    }
    sb.assert_untouched();
}

#[test]
fn truncated_gzip_is_a_clear_error() {
    let gz = gzip(&layer());
    fails(
        &gz[..gz.len() / 2],
        Compression::Gzip,
        &["gzip", "corrupt or truncated"],
    );
    fails(
        &gz[..gz.len() - 4],
        Compression::Gzip,
        &["gzip", "corrupt or truncated"],
    );
}

#[test]
fn corrupt_zstd_is_a_clear_error() {
    // With a frame checksum, any damage is detected by the decoder itself.
    let mut enc = ::zstd::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_checksum(true).unwrap();
    std::io::Write::write_all(&mut enc, &layer()).unwrap();
    let mut zst = enc.finish().unwrap();
    let mid = zst.len() / 2;
    for b in &mut zst[mid..mid + 16] {
        *b ^= 0x5a;
    }
    fails(&zst, Compression::Zstd, &["zstd", "corrupt or truncated"]);
    let zst = zstd(&layer());
    fails(&zst[..zst.len() - 1], Compression::Zstd, &["zstd"]);
}

#[test]
fn garbage_after_the_compressed_stream_is_rejected() {
    let mut gz = gzip(&layer());
    gz.extend_from_slice(b"garbage that is not a gzip member");
    fails(&gz, Compression::Gzip, &["gzip"]);
    let mut zst = zstd(&layer());
    zst.extend_from_slice(b"garbage");
    fails(&zst, Compression::Zstd, &["zstd"]);
}

#[test]
fn data_after_the_tar_end_is_hashed() {
    let mut bytes = layer();
    bytes.extend_from_slice(&[0u8; 4096]);
    bytes.extend_from_slice(b"trailing bytes inside the compressed stream");
    let sb = Sandbox::new();
    let out = extract_layer(
        &gzip(&bytes)[..],
        Compression::Gzip,
        &sb.dest,
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(out.diff_id, Digest::of(Algorithm::Sha256, &bytes));
    assert_eq!(out.bytes, bytes.len() as u64);
}

#[test]
fn truncated_tar_inside_a_valid_stream_is_rejected() {
    let bytes = layer();
    let cut = &bytes[..200_000];
    fails(&gzip(cut), Compression::Gzip, &["a/big", "truncated"]);
    fails(cut, Compression::None, &["a/big", "truncated"]);
}

#[test]
fn corrupt_tar_headers_are_rejected() {
    let mut bytes = layer();
    bytes[100] ^= 0xff; // inside the first header: its checksum no longer matches
    fails(&bytes, Compression::None, &["not a valid tar archive"]);
}

#[test]
fn sha512_diff_ids_are_supported() {
    let bytes = layer();
    let sb = Sandbox::new();
    let opts = ExtractOptions {
        diff_id_algorithm: Algorithm::Sha512,
        ..ExtractOptions::default()
    };
    let out = extract_layer(&bytes[..], Compression::None, &sb.dest, &opts).unwrap();
    assert_eq!(out.diff_id, Digest::of(Algorithm::Sha512, &bytes));
}
