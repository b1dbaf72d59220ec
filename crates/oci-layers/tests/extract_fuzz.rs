//! The body of the `extract_layer` fuzz target (`fuzz/fuzz_targets/extract_layer.rs` includes
//! this file), and a test running it over seed inputs so CI exercises it without a fuzzer.
#![allow(clippy::expect_used)]

use oci_layers::Compression;
use oci_layers::extract::{ExtractOptions, extract_layer};

/// Extracts `data` as an uncompressed layer into `dest` inside an otherwise empty directory;
/// whatever the outcome (errors are expected), nothing may appear next to `dest`.
pub fn check(data: &[u8]) {
    let outer = tempfile::tempdir().expect("creating a temporary directory");
    let dest = outer.path().join("dest");
    std::fs::create_dir(&dest).expect("creating dest");
    let _ = extract_layer(data, Compression::None, &dest, &ExtractOptions::default());
    let names: Vec<_> = std::fs::read_dir(outer.path())
        .expect("listing the outer directory")
        .map(|e| e.expect("reading the outer directory").file_name())
        .collect();
    assert_eq!(
        names,
        ["dest"],
        "extraction created something outside its directory"
    );
    let meta = std::fs::symlink_metadata(&dest).expect("dest vanished");
    assert!(meta.is_dir(), "dest was replaced");
}

#[cfg(test)]
mod extract_support;

#[cfg(test)]
mod seeds {
    use super::check;
    use super::extract_support::{Spec, dir, file, hardlink, symlink, tar};

    fn seeds() -> Vec<Vec<u8>> {
        let long = "x/".repeat(80);
        let pax = Spec {
            pax: vec![
                ("path".into(), b"../pax-escape".to_vec()),
                ("SCHILY.xattr.user.a".into(), b"\n\n".to_vec()),
                ("mtime".into(), b"-5.5".to_vec()),
            ],
            ..file("innocent", "x")
        };
        let layers: Vec<Vec<Spec>> = vec![
            vec![],
            vec![
                dir("a"),
                file("a/b", "hello"),
                symlink("a/c", "b"),
                hardlink("a/d", "a/b"),
            ],
            vec![file("../x", "x")],
            vec![symlink("a", "/tmp"), file("a/file", "x")],
            vec![symlink("a", ".."), file("a/x", "x")],
            vec![hardlink("h", "../outside")],
            vec![
                symlink("s", "/etc/passwd"),
                hardlink("h", "s"),
                file("h", "x"),
            ],
            vec![symlink("d", ".."), dir("d"), file("d/x", "x")],
            vec![
                file(&long, "deep"),
                Spec {
                    gnu_long_name: true,
                    ..file(&long, "gnu")
                },
            ],
            vec![pax],
        ];
        let mut out: Vec<Vec<u8>> = layers.iter().map(|l| tar(l)).collect();
        out.push(Vec::new());
        out.push(vec![0xa5; 3000]);
        let valid = tar(&layers[1]);
        out.push(valid[..700].to_vec());
        out
    }

    /// Set to a directory to also write the seeds there, as a fuzzing corpus.
    const SEED_DIR_VAR: &str = "EXTRACT_FUZZ_SEED_DIR";

    #[test]
    fn fuzz_body_holds_on_seeds() {
        let corpus = std::env::var_os(SEED_DIR_VAR).map(std::path::PathBuf::from);
        for (i, seed) in seeds().iter().enumerate() {
            check(seed);
            if let Some(dir) = &corpus {
                std::fs::write(dir.join(format!("seed-{i}.tar")), seed).unwrap();
            }
        }
    }

    #[test]
    fn fuzz_body_holds_on_mutated_seeds() {
        // A small deterministic mutation loop: flips bytes in the headers of hostile tars.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in seeds().into_iter().filter(|s| !s.is_empty()) {
            for _ in 0..40 {
                let mut data = seed.clone();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() % data.len() as u64) as usize;
                    data[at] = next() as u8;
                }
                check(&data);
            }
        }
    }
}
