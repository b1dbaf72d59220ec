//! Timing of `copy_tree` on a tree like a container rootfs (150+ MB, 5,000+ entries).
//! Ignored by default; run with
//! `cargo test --release -p fastcopy bench -- --ignored --nocapture`.

use std::fs;
use std::os::unix::fs::symlink;
use std::time::Instant;

use super::*;
use crate::Strategy;
use crate::testutil::fixture::pattern;

/// 5,600 files from 100 bytes to 2 MiB (about 180 MB), 200 directories, 300 symlinks.
fn build(root: &Path) -> u64 {
    let mut total = 0;
    for d in 0..200 {
        let dir = root.join(format!("d{}/s{}", d % 20, d));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..28 {
            let i = d * 28 + f;
            let len = match i % 100 {
                0 => 2 << 20,
                1..=4 => 128 << 10,
                5..=30 => 20_000,
                _ => 100 + (i * 37) % 9000,
            };
            fs::write(dir.join(format!("f{f}")), pattern(len, i as u8)).unwrap();
            total += len as u64;
        }
        if d % 2 == 0 {
            for l in 0..3 {
                symlink(format!("f{l}"), dir.join(format!("l{l}"))).unwrap();
            }
        }
    }
    total
}

fn time(label: &str, src: &Path, dst: &Path, opts: &Options, parallel: bool) {
    remove_tree(dst).unwrap();
    // Flush dirty pages of earlier rounds so each round starts alike.
    rustix::fs::sync();
    let start = Instant::now();
    let report = copy_tree_with(src, dst, opts, &|_| false, parallel).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:<28} {secs:>7.3}s  {:>5} files {:>4} MB  {:?}",
        report.files,
        report.bytes >> 20,
        report.strategy()
    );
}

#[test]
#[ignore = "benchmark; run explicitly with --ignored --nocapture"]
fn bench_copy_tree() {
    let base = std::env::var_os("FASTCOPY_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let tmp = tempfile::tempdir_in(base).unwrap();
    let src = tmp.path().join("src");
    let bytes = build(&src);
    println!("tree: {} MB in {}", bytes >> 20, src.display());
    let dst = tmp.path().join("dst");
    for (label, strategy) in [("auto", None), ("read/write", Some(Strategy::ReadWrite))] {
        let opts = Options {
            strategy,
            ..Options::default()
        };
        for parallel in [false, true, false, true] {
            let label = format!(
                "{label} {}",
                if parallel { "parallel" } else { "sequential" }
            );
            time(&label, &src, &dst, &opts, parallel);
        }
    }
    remove_tree(&dst).unwrap();
    rustix::fs::sync();
    let start = Instant::now();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(status.success());
    println!(
        "{:<28} {:>7.3}s",
        "cp -a (reference)",
        start.elapsed().as_secs_f64()
    );
}
