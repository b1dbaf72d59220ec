//! The body of the `erofs_merged` fuzz target, and a test that runs it over the seeds.
//!
//! The input is split into one to four tar streams: the first byte's low two bits say how
//! many (1 + n); every stream but the last is prefixed by its length (u32, little-endian,
//! cut short at the input's end); the last takes the rest. They are merged into one image:
//! merging may fail, but must never panic, and a success must be a whole, well-formed image
//! of the size it reports, with no whiteout or opaque marker left in it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

use std::os::unix::fs::FileExt;

/// Splits `data` into the layer streams it encodes.
pub fn split(data: &[u8]) -> Vec<&[u8]> {
    let Some((&first, mut rest)) = data.split_first() else {
        return vec![&[]];
    };
    let count = 1 + usize::from(first & 3);
    let mut layers = Vec::with_capacity(count);
    for _ in 1..count {
        let len = rest
            .get(..4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        rest = rest.get(4..).unwrap_or(&[]);
        let (layer, after) = rest.split_at(len.min(rest.len()));
        layers.push(layer);
        rest = after;
    }
    layers.push(rest);
    layers
}

/// The input [`split`] reads as `layers`.
pub fn join(layers: &[&[u8]]) -> Vec<u8> {
    assert!((1..=4).contains(&layers.len()));
    let mut out = vec![(layers.len() - 1) as u8];
    for (i, layer) in layers.iter().enumerate() {
        if i + 1 < layers.len() {
            out.extend_from_slice(&(layer.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(layer);
    }
    out
}

/// Merges the layers `data` encodes into a temporary file and checks the result's shape.
pub fn check(data: &[u8]) {
    let layers = split(data);
    let out = tempfile::tempfile().unwrap();
    let mut options = erofs::Options::default();
    // Keep a hostile size from filling the fuzzing machine's disk.
    options.max_data_bytes = 64 << 20;
    match erofs::write_merged(layers.iter().copied(), &out, &options) {
        Ok(summary) => {
            let len = out.metadata().unwrap().len();
            assert_eq!(len, summary.image_bytes);
            assert_eq!(len % 4096, 0);
            assert_eq!(summary.layers, layers.len() as u64);
            assert_eq!((summary.whiteouts, summary.opaque_dirs), (0, 0));
            assert!(summary.dead_bytes <= summary.data_bytes);
            let mut sb = [0u8; 128];
            out.read_exact_at(&mut sb, 1024).unwrap();
            assert_eq!(&sb[..4], &0xE0F5_E1E2u32.to_le_bytes());
            let mut image = vec![0; len as usize];
            out.read_exact_at(&mut image, 0).unwrap();
            let census = erofs::verify(&image).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(census.dirs, summary.dirs);
            let inodes = summary.files + summary.dirs + summary.symlinks + summary.specials;
            assert_eq!(census.inodes, inodes);
        }
        Err(e) => {
            let _ = (e.to_string(), e.kind(), e.innermost());
            if let erofs::Error::Layer { index, .. } = e {
                assert!(index < layers.len());
            }
        }
    }
}

#[test]
fn split_reads_what_join_writes() {
    let layers: [&[u8]; 3] = [b"one", b"", b"three"];
    assert_eq!(split(&join(&layers)), layers);
    assert_eq!(split(&[]), [&[] as &[u8]]);
    assert_eq!(split(&[3, 9, 0]).len(), 4);
}

#[test]
fn seeds_do_not_panic() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/erofs_merged");
    let mut seen = 0;
    for seed in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(seed.unwrap().path()).unwrap();
        check(&data);
        for cut in (0..data.len()).step_by(211) {
            check(&data[..cut]);
        }
        seen += 1;
    }
    assert!(seen >= 4, "the seeds are missing");
}
