//! The body of the `erofs_tar` fuzz target, and a test that runs it over the seeds.
//!
//! Arbitrary bytes are written as a layer image: writing may fail, but must never panic,
//! and what it writes on success must be a whole image of the size it reports.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

use std::os::unix::fs::FileExt;

/// Writes `data` as a layer image into a temporary file and checks the result's shape.
pub fn check(data: &[u8]) {
    let out = tempfile::tempfile().unwrap();
    let mut options = erofs::Options::default();
    // Keep a hostile size from filling the fuzzing machine's disk.
    options.max_data_bytes = 64 << 20;
    match erofs::write_layer(data, &out, &options) {
        Ok(summary) => {
            let len = out.metadata().unwrap().len();
            assert_eq!(len, summary.image_bytes);
            assert_eq!(len % 4096, 0);
            let mut sb = [0u8; 128];
            out.read_exact_at(&mut sb, 1024).unwrap();
            assert_eq!(&sb[..4], &0xE0F5_E1E2u32.to_le_bytes());
            let blocks = u32::from_le_bytes(sb[36..40].try_into().unwrap());
            assert_eq!(u64::from(blocks) * 4096, len);
            let mut image = vec![0; len as usize];
            out.read_exact_at(&mut image, 0).unwrap();
            let census = erofs::verify(&image).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(census.dirs, summary.dirs);
            let inodes = summary.files + summary.dirs + summary.symlinks + summary.specials;
            assert_eq!(census.inodes, inodes + summary.whiteouts);
        }
        Err(e) => {
            let _ = (e.to_string(), e.kind());
        }
    }
}

#[test]
fn seeds_do_not_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/erofs_tar");
    let mut seen = 0;
    for seed in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(seed.unwrap().path()).unwrap();
        check(&data);
        // Every prefix too: truncated archives are the commonest damage.
        for cut in (0..data.len()).step_by(97) {
            check(&data[..cut]);
        }
        seen += 1;
    }
    assert!(seen >= 4, "the seeds are missing");
}
