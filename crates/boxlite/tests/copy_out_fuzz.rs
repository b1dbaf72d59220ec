//! The body of the `copy_out_tar` fuzz target (`fuzz/fuzz_targets/copy_out_tar.rs` includes
//! this file): a tar stream from a guest, as `LiteBox::copy_out` unpacks it, may fail but
//! must never panic nor create anything outside its directory. A plain test runs it over the
//! seeds so CI exercises it without a fuzzer.
#![allow(clippy::expect_used)]

/// Unpacks `data` under `dest` inside an otherwise empty directory; whatever the outcome
/// (errors are expected), nothing may appear next to `dest`.
pub fn check(data: &[u8]) {
    let outer = tempfile::tempdir().expect("creating a temporary directory");
    let dest = outer.path().join("dest");
    std::fs::create_dir(&dest).expect("creating dest");
    // What `boxlite::copy::unpack_from_guest` does, spelled out so that the fuzz target
    // needs only the `guest` crate.
    let root = guest::root::BoxRoot::open(&dest, false).expect("opening dest");
    let _ = guest::unpack::unpack(&root, "/", data);
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
}

#[cfg(test)]
mod seeds {
    /// The runtime's own entry point agrees with the body on a valid stream.
    #[test]
    fn unpack_from_guest_unpacks_a_valid_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/seeds/copy_out_tar/plain.tar");
        let data = std::fs::read(seed).expect("reading the seed");
        boxlite::copy::unpack_from_guest(dir.path(), data.as_slice()).expect("unpacking");
        let file = std::fs::read_to_string(dir.path().join("name/file")).expect("file");
        assert_eq!(file, "hello");
    }

    /// Every seed of the fuzz target, and the seeds of the layer-extraction target (tar
    /// streams with escapes through `..`, symlinks and hardlinks).
    #[test]
    fn seeds_neither_panic_nor_escape() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
        let mut count = 0;
        for target in ["copy_out_tar", "extract_layer"] {
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
}
