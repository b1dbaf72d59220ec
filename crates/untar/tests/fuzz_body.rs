//! The body of the `untar` fuzz target (`fuzz/fuzz_targets/untar.rs` includes this file): a
//! hostile tar stream, unpacked under either policy, may fail but must never panic, create
//! anything outside its destination or replace the destination; under the host's policy no
//! special file and no set-id bit may appear either. A plain test runs it over the seeds so
//! CI exercises it without a fuzzer.
#![allow(clippy::expect_used)]

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Unpacks `data` under each policy into a `dest` inside an otherwise empty directory;
/// whatever the outcome (errors are expected), nothing may appear next to `dest`.
pub fn check(data: &[u8]) {
    for (host, policy) in [
        (false, untar::Policy::guest()),
        (true, untar::Policy::host()),
    ] {
        let outer = tempfile::tempdir().expect("creating a temporary directory");
        let dest = outer.path().join("dest");
        std::fs::create_dir(&dest).expect("creating dest");
        let _ = untar::unpack_into(&dest, data, &policy);
        let names: Vec<_> = std::fs::read_dir(outer.path())
            .expect("listing the outer directory")
            .map(|e| e.expect("reading the outer directory").file_name())
            .collect();
        assert_eq!(
            names,
            ["dest"],
            "unpacking created something outside its directory"
        );
        let meta = std::fs::symlink_metadata(&dest).expect("dest vanished");
        assert!(meta.is_dir(), "dest was replaced");
        walk(&dest, host);
    }
}

/// Visits everything under `dir` without following symlinks, making directories searchable
/// (so the temporary directory can be removed even when not root); under the host's policy,
/// checks that nothing special or set-id was created.
fn walk(dir: &Path, host: bool) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mode = std::fs::symlink_metadata(&dir).expect("stat").mode();
        let _ = std::fs::set_permissions(&dir, PermissionsExt::from_mode(mode | 0o700));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if host {
                let kind = meta.file_type();
                assert!(
                    !(kind.is_block_device() || kind.is_char_device() || kind.is_fifo()),
                    "the host's policy created the special file {}",
                    path.display()
                );
                assert_eq!(
                    meta.mode() & 0o6000,
                    0,
                    "the host's policy kept a set-id bit on {}",
                    path.display()
                );
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
}

#[cfg(test)]
mod seeds {
    /// Every seed of this target, and the seeds of the layer-extraction target (tar
    /// streams with escapes through `..`, symlinks and hardlinks).
    #[test]
    fn seeds_neither_panic_nor_escape() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
        let mut count = 0;
        for target in ["untar", "extract_layer"] {
            for entry in std::fs::read_dir(fuzz.join(target)).expect("reading seeds") {
                let data = std::fs::read(entry.expect("seed").path()).expect("reading a seed");
                super::check(&data);
                count += 1;
            }
        }
        assert!(count > 4, "only {count} seeds");
        super::check(&[]);
        super::check(&[0xa5; 3000]);
    }

    /// A valid seed unpacks under both policies.
    #[test]
    fn the_plain_seed_unpacks() {
        let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/seeds/untar/plain.tar");
        let data = std::fs::read(seed).expect("reading the seed");
        for policy in [untar::Policy::guest(), untar::Policy::host()] {
            let dir = tempfile::tempdir().expect("tempdir");
            untar::unpack_into(dir.path(), data.as_slice(), &policy).expect("unpacking");
            let file = std::fs::read_to_string(dir.path().join("name/file")).expect("file");
            assert_eq!(file, "hello");
        }
    }
}
