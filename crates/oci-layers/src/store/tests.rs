use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn tmp_is_empty(store: &Store) -> bool {
    fs::read_dir(store.tmp_dir()).unwrap().next().is_none()
}

#[test]
fn puts_verifies_and_reads_back() {
    let (_d, store) = store();
    let data = b"hello blob".repeat(100_000);
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let digest = Digest::of(alg, &data);
        assert!(!store.has_blob(&digest));
        let n = store
            .put_blob(
                &data[..],
                &digest,
                Some(data.len() as u64),
                "test blob",
                &Progress::hidden(),
            )
            .unwrap();
        assert_eq!(n, data.len() as u64);
        assert!(store.has_blob(&digest));
        assert!(store.blob_path(&digest).ends_with(format!(
            "blobs/{}/{}",
            alg.name(),
            digest.hex()
        )));
        let mut back = Vec::new();
        store
            .open_blob(&digest)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(store.read_blob(&digest, u64::MAX, "t").unwrap(), data);
        let mode = fs::metadata(store.blob_path(&digest))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444);
    }
    assert_eq!(store.blobs().unwrap().len(), 2);
    assert!(tmp_is_empty(&store));
}

#[test]
fn existing_blob_is_not_read_again() {
    let (_d, store) = store();
    let digest = Digest::of(Algorithm::Sha256, b"abc");
    store
        .put_blob(&b"abc"[..], &digest, None, "t", &Progress::hidden())
        .unwrap();
    // A reader that fails proves nothing is read the second time.
    struct Boom;
    impl Read for Boom {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("must not be read"))
        }
    }
    assert_eq!(
        store
            .put_blob(Boom, &digest, Some(3), "t", &Progress::hidden())
            .unwrap(),
        3
    );
    let err = store
        .put_blob(Boom, &digest, Some(4), "t", &Progress::hidden())
        .unwrap_err();
    assert!(err.to_string().contains("size mismatch"), "{err}");
}

#[test]
fn digest_mismatch_names_blob_and_leaves_nothing() {
    let (_d, store) = store();
    let expected = Digest::of(Algorithm::Sha256, b"right");
    let err = store
        .put_blob(
            &b"wrong"[..],
            &expected,
            None,
            "layer 3 of demo",
            &Progress::hidden(),
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{msg}");
    assert!(
        msg.contains("layer 3 of demo") && msg.contains(&expected.to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&Digest::of(Algorithm::Sha256, b"wrong").to_string()),
        "{msg}"
    );
    assert!(!store.has_blob(&expected));
    assert!(tmp_is_empty(&store));
}

#[test]
fn size_mismatch_short_and_long() {
    let (_d, store) = store();
    let digest = Digest::of(Algorithm::Sha256, b"12345");
    for size in [4, 6] {
        let err = store
            .put_blob(
                &b"12345"[..],
                &digest,
                Some(size),
                "blob x",
                &Progress::hidden(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("size mismatch for blob x") && err.contains(&size.to_string()),
            "{err}"
        );
    }
    assert!(!store.has_blob(&digest));
    assert!(tmp_is_empty(&store));
    let err = store
        .put_blob(
            &b""[..],
            &digest,
            Some(MAX_BLOB_BYTES + 1),
            "huge",
            &Progress::hidden(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
}

#[test]
fn read_errors_name_the_blob() {
    let (_d, store) = store();
    struct Truncated(usize);
    impl Read for Truncated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let n = self.0.min(buf.len());
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }
    let digest = Digest::of(Algorithm::Sha256, b"x");
    let err = store
        .put_blob(
            Truncated(1000),
            &digest,
            None,
            "layer 0 of broken.tar",
            &Progress::hidden(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("reading layer 0 of broken.tar"), "{err}");
    assert!(tmp_is_empty(&store));
}

#[test]
fn computes_digest_when_unknown() {
    let (_d, store) = store();
    let (digest, size) = store
        .put_blob_computing(
            &b"docker layer"[..],
            Algorithm::Sha256,
            "t",
            &Progress::hidden(),
        )
        .unwrap();
    assert_eq!(digest, Digest::of(Algorithm::Sha256, b"docker layer"));
    assert_eq!(size, 12);
    assert!(store.has_blob(&digest));
    // Again: same digest, no error, no temp file left behind.
    store
        .put_blob_computing(
            &b"docker layer"[..],
            Algorithm::Sha256,
            "t",
            &Progress::hidden(),
        )
        .unwrap();
    assert!(tmp_is_empty(&store));
}

#[test]
fn corrupted_blob_is_detected_on_read() {
    let (_d, store) = store();
    let digest = Digest::of(Algorithm::Sha256, b"{}");
    store
        .put_blob(&b"{}"[..], &digest, None, "t", &Progress::hidden())
        .unwrap();
    let path = store.blob_path(&digest);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, b"[]").unwrap();
    let err = store
        .read_blob_json::<serde_json::Value>(&digest, 100, "config")
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    let err = store
        .read_blob(&digest, 1, "config")
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than 1"), "{err}");
}

#[test]
fn concurrent_writers_of_one_blob_agree() {
    let (_d, store) = store();
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::of(Algorithm::Sha256, &data);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                store
                    .put_blob(
                        &data[..],
                        &digest,
                        Some(data.len() as u64),
                        "t",
                        &Progress::hidden(),
                    )
                    .unwrap();
            });
        }
    });
    assert_eq!(store.read_blob(&digest, u64::MAX, "t").unwrap(), data);
    assert!(tmp_is_empty(&store));
}
