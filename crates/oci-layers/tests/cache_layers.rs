//! The layer cache: publish once, share between threads and processes, survive crashes.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod extract_support;

use std::fs;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use extract_support::{dir, file, gzip, hardlink, tar};
use oci_layers::{Algorithm, CachedLayer, Compression, Digest, Error, LayerCache, Progress};
use whiteout::LayerEntry;

const CHILD_HOME: &str = "OCI_LAYERS_CACHE_TEST_HOME";
const CHILD_MODE: &str = "OCI_LAYERS_CACHE_TEST_MODE";

fn layer(tag: &str) -> (Vec<u8>, Digest) {
    let bytes = tar(&[
        dir("etc"),
        file("etc/os-release", format!("ID={tag}\n")),
        file("data", vec![7u8; 200_000]),
        file("etc/.wh.gone", ""),
    ]);
    let diff_id = Digest::of(Algorithm::Sha256, &bytes);
    (gzip(&bytes), diff_id)
}

/// A blob reader that waits before its first byte, so concurrent callers overlap.
struct Slow {
    inner: Cursor<Vec<u8>>,
    delay: Duration,
}

impl Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::thread::sleep(std::mem::take(&mut self.delay));
        self.inner.read(buf)
    }
}

type Opened = oci_layers::Result<(Box<dyn Read + Send>, Compression)>;

fn opener(blob: Vec<u8>, delay: Duration, calls: &AtomicUsize) -> impl FnOnce() -> Opened + '_ {
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        let reader = Slow {
            inner: Cursor::new(blob),
            delay,
        };
        Ok((Box::new(reader) as Box<dyn Read + Send>, Compression::Gzip))
    }
}

fn dir_names(path: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn check_layer(layer: &CachedLayer, tag: &str) {
    let release = fs::read_to_string(layer.root.join("etc/os-release")).unwrap();
    assert_eq!(release, format!("ID={tag}\n"));
    assert_eq!(
        layer.entries,
        [
            LayerEntry::dir("etc"),
            LayerEntry::non_dir("etc/os-release"),
            LayerEntry::non_dir("data"),
            LayerEntry::non_dir("etc/.wh.gone"),
        ]
    );
}

#[test]
fn cache_is_shareable_between_threads() {
    fn assert_sync_send<T: Sync + Send>() {}
    assert_sync_send::<LayerCache>();
}

#[test]
fn extracts_once_publishes_and_survives_reopen() {
    let home = tempfile::tempdir().unwrap();
    let cache = LayerCache::open(home.path()).unwrap();
    let (blob, diff_id) = layer("one");
    assert!(cache.lookup(&diff_id).unwrap().is_none());
    let calls = AtomicUsize::new(0);
    let what = "image test layer 1/1";
    let got = cache
        .get_or_extract(
            &diff_id,
            opener(blob.clone(), Duration::ZERO, &calls),
            what,
            &Progress::hidden(),
        )
        .unwrap();
    check_layer(&got, "one");
    assert_eq!(got.root, cache.layer_dir(&diff_id).join("rootfs"));
    let again = cache
        .get_or_extract(
            &diff_id,
            opener(blob, Duration::ZERO, &calls),
            what,
            &Progress::hidden(),
        )
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "second call must not extract"
    );
    assert_eq!(again.entries, got.entries);
    assert_eq!(
        dir_names(&home.path().join("layers/tmp")),
        Vec::<String>::new()
    );
    drop(cache);

    let cache = LayerCache::open(home.path()).unwrap();
    let found = cache
        .lookup(&diff_id)
        .unwrap()
        .expect("published layer survives reopen");
    check_layer(&found, "one");
    assert_eq!(cache.list().unwrap(), std::slice::from_ref(&diff_id));
    assert!(cache.remove(&diff_id).unwrap());
    assert!(!cache.remove(&diff_id).unwrap());
    assert!(cache.lookup(&diff_id).unwrap().is_none());
    assert!(cache.list().unwrap().is_empty());
    assert!(!cache.layer_dir(&diff_id).exists());
}

#[test]
fn concurrent_threads_extract_once() {
    let home = tempfile::tempdir().unwrap();
    let cache = LayerCache::open(home.path()).unwrap();
    let (blob, diff_id) = layer("threads");
    let (other_blob, other_id) = layer("other");
    let calls = AtomicUsize::new(0);
    let other_calls = AtomicUsize::new(0);
    let results: Vec<CachedLayer> = std::thread::scope(|s| {
        let mut handles: Vec<_> = (0..4)
            .map(|_| {
                let open = opener(blob.clone(), Duration::from_millis(300), &calls);
                s.spawn(|| cache.get_or_extract(&diff_id, open, "layer", &Progress::hidden()))
            })
            .collect();
        // An independent layer proceeds in parallel with the others.
        let open = opener(other_blob, Duration::ZERO, &other_calls);
        handles
            .push(s.spawn(|| cache.get_or_extract(&other_id, open, "other", &Progress::hidden())));
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "exactly one thread extracts"
    );
    assert_eq!(other_calls.load(Ordering::SeqCst), 1);
    for r in &results[..4] {
        check_layer(r, "threads");
    }
    check_layer(&results[4], "other");
    let mut want = vec![diff_id, other_id];
    want.sort();
    assert_eq!(cache.list().unwrap(), want);
}

/// Not a test by itself: the body of the helper processes the tests below spawn.
#[test]
#[ignore = "helper body for the multi-process tests, which spawn it"]
fn helper_process() {
    let Ok(home) = std::env::var(CHILD_HOME) else {
        return; // only meaningful when spawned by a test
    };
    let home = PathBuf::from(home);
    let mode = std::env::var(CHILD_MODE).unwrap_or_default();
    let cache = LayerCache::open(&home).unwrap();
    let (blob, diff_id) = layer("proc");
    let marker = home.join(format!("opened-{}", std::process::id()));
    let open = move || -> Opened {
        fs::write(&marker, b"").unwrap();
        let reader: Box<dyn Read + Send> = if mode == "hang" {
            // Hand out half the blob, then stall until killed.
            Box::new(Cursor::new(blob[..blob.len() / 2].to_vec()).chain(Stall))
        } else {
            Box::new(Slow {
                inner: Cursor::new(blob),
                delay: Duration::from_millis(500),
            })
        };
        Ok((reader, Compression::Gzip))
    };
    let got = cache
        .get_or_extract(&diff_id, open, "helper", &Progress::hidden())
        .unwrap();
    check_layer(&got, "proc");
}

struct Stall;

impl Read for Stall {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        std::thread::sleep(Duration::from_secs(600));
        Ok(0)
    }
}

fn spawn_helper(home: &Path, mode: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_HOME, home)
        .env(CHILD_MODE, mode)
        .spawn()
        .unwrap()
}

fn markers(home: &Path) -> usize {
    dir_names(home)
        .iter()
        .filter(|n| n.starts_with("opened-"))
        .count()
}

#[test]
fn concurrent_processes_extract_once() {
    let home = tempfile::tempdir().unwrap();
    let children: Vec<Child> = (0..2).map(|_| spawn_helper(home.path(), "")).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "helper process failed");
    }
    assert_eq!(
        markers(home.path()),
        1,
        "exactly one process opened the blob"
    );
    let cache = LayerCache::open(home.path()).unwrap();
    let (_, diff_id) = layer("proc");
    check_layer(&cache.lookup(&diff_id).unwrap().unwrap(), "proc");
}

#[test]
fn a_killed_extraction_leaves_nothing_visible_and_is_cleaned_up() {
    let home = tempfile::tempdir().unwrap();
    let mut child = spawn_helper(home.path(), "hang");
    let start = Instant::now();
    while markers(home.path()) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "helper never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200)); // let it write part of the layer
    child.kill().unwrap();
    child.wait().unwrap();

    let tmp = home.path().join("layers/tmp");
    assert_eq!(
        dir_names(&tmp).len(),
        1,
        "the killed extraction left its staging dir"
    );
    let (blob, diff_id) = layer("proc");
    // A cache opened by someone else (without cleaning) sees no layer.
    let layers = home.path().join("layers");
    assert!(!layers.join("sha256").join(diff_id.hex()).exists());

    let cache = LayerCache::open(home.path()).unwrap();
    assert!(cache.lookup(&diff_id).unwrap().is_none());
    assert!(cache.list().unwrap().is_empty());
    assert!(dir_names(&tmp).is_empty(), "stale staging was not removed");

    let calls = AtomicUsize::new(0);
    let got = cache
        .get_or_extract(
            &diff_id,
            opener(blob, Duration::ZERO, &calls),
            "retry",
            &Progress::hidden(),
        )
        .unwrap();
    check_layer(&got, "proc");
}

#[test]
fn live_staging_is_left_alone() {
    let home = tempfile::tempdir().unwrap();
    let mut child = spawn_helper(home.path(), "hang");
    let start = Instant::now();
    while markers(home.path()) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "helper never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let tmp = home.path().join("layers/tmp");
    LayerCache::open(home.path()).unwrap();
    assert_eq!(
        dir_names(&tmp).len(),
        1,
        "a live extraction's staging was removed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn diff_id_mismatch_caches_nothing() {
    let home = tempfile::tempdir().unwrap();
    let cache = LayerCache::open(home.path()).unwrap();
    let (blob, _) = layer("real");
    let (_, claimed) = layer("claimed");
    let calls = AtomicUsize::new(0);
    let what = "image evil layer 3/4";
    let err = cache
        .get_or_extract(
            &claimed,
            opener(blob, Duration::ZERO, &calls),
            what,
            &Progress::hidden(),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(
        text.contains(what) && text.contains(&claimed.to_string()),
        "{text}"
    );
    assert!(cache.lookup(&claimed).unwrap().is_none());
    assert!(cache.list().unwrap().is_empty());
    assert!(dir_names(&home.path().join("layers/tmp")).is_empty());
    assert!(
        !home
            .path()
            .join("layers/sha256")
            .join(claimed.hex())
            .exists()
    );
}

#[test]
fn hostile_and_broken_layers_cache_nothing() {
    let home = tempfile::tempdir().unwrap();
    let cache = LayerCache::open(home.path()).unwrap();
    let hostile = tar(&[hardlink("h", "../../etc/passwd")]);
    let diff_id = Digest::of(Algorithm::Sha256, &hostile);
    let what = "image evil layer 1/1";
    let calls = AtomicUsize::new(0);
    let err = cache
        .get_or_extract(
            &diff_id,
            opener(gzip(&hostile), Duration::ZERO, &calls),
            what,
            &Progress::hidden(),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Layer { .. }), "{err:?}");
    assert!(
        text.starts_with(what) && text.contains("\"h\"") && text.contains("escapes"),
        "{text}"
    );
    let gz = gzip(&tar(&[file("f", vec![1u8; 100_000])]));
    let err = cache
        .get_or_extract(
            &diff_id,
            opener(gz[..gz.len() / 2].to_vec(), Duration::ZERO, &calls),
            what,
            &Progress::hidden(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("corrupt or truncated"), "{err}");
    assert!(cache.list().unwrap().is_empty());
    assert!(dir_names(&home.path().join("layers/tmp")).is_empty());
}

#[test]
fn an_unsynced_layer_from_an_earlier_boot_is_extracted_again() {
    let home = tempfile::tempdir().unwrap();
    let cache = LayerCache::open(home.path()).unwrap();
    let (blob, diff_id) = layer("boot");
    let calls = AtomicUsize::new(0);
    let extract = |calls| {
        cache
            .get_or_extract(
                &diff_id,
                opener(blob.clone(), Duration::ZERO, calls),
                "image test layer 1/1",
                &Progress::hidden(),
            )
            .unwrap()
    };
    extract(&calls);
    let stamp = cache.layer_dir(&diff_id).join("stamp");
    let written: serde_json::Value = serde_json::from_slice(&fs::read(&stamp).unwrap()).unwrap();
    assert_eq!(written["synced"], false, "{written}");

    // As if the machine had crashed and rebooted before the data reached the disk.
    let earlier = r#"{"boot_id":"00000000-0000-0000-0000-000000000000","synced":false}"#;
    fs::write(&stamp, earlier).unwrap();
    assert!(cache.lookup(&diff_id).unwrap().is_none());
    check_layer(&extract(&calls), "boot");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the untrusted entry was redone"
    );

    // The same entry synced before that boot ended is trusted.
    let synced = r#"{"boot_id":"00000000-0000-0000-0000-000000000000","synced":true}"#;
    fs::write(&stamp, synced).unwrap();
    assert!(cache.lookup(&diff_id).unwrap().is_some());
}
