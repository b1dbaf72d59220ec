//! Concurrent assembly: threads racing for one destination (one assembles, the others find it
//! complete), and threads or processes sharing one cold layer cache (each layer extracted once).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rootfs_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use oci_layers::rootfs::{AssembleReport, Method};
use oci_layers::{Compression, Digest, LayerCache, LayoutBuilder, Store};
use rootfs_support::{Node, T1, Tree, cache_staging, fallback_staging, snapshot, whiteout_names};

const LAYERS: usize = 3;
/// Files per layer: enough that extraction takes a moment, so concurrent callers overlap.
const FILES: usize = 60;
const HELPER_HOME: &str = "OCI_LAYERS_ROOTFS_HELPER_HOME";
const HELPER_DEST: &str = "OCI_LAYERS_ROOTFS_HELPER_DEST";
const HELPER_GO: &str = "OCI_LAYERS_ROOTFS_HELPER_GO";

/// An image of three layers of [`FILES`] files each, every layer writing the same paths,
/// imported into `work/home`; returns the store and its sorted diff_ids.
fn image(work: &Path) -> (Store, Vec<Digest>) {
    let mut builder = LayoutBuilder::new();
    for layer in 0..LAYERS {
        let tree = Tree::new(work.join(format!("l{layer}")));
        for i in 0..FILES {
            tree.file(
                &format!("d{}/f{i}", i % 10),
                format!("layer {layer} file {i}\n").repeat(50),
                0o644,
            );
        }
        tree.file(&format!("only{layer}"), "", 0o644);
        if layer > 0 {
            tree.whiteout(&format!("only{}", layer - 1));
        }
        tree.stamp(T1);
        builder = builder.layer_dir(&tree.root, Compression::Gzip);
    }
    let layout = work.join("layout");
    let built = builder.write_layout(&layout, "many").unwrap();
    let store = Store::open(&work.join("home")).unwrap();
    store.import(&layout, Some("many"), false).unwrap();
    let mut diff_ids: Vec<_> = built.layers.into_iter().map(|l| l.diff_id).collect();
    diff_ids.sort();
    (store, diff_ids)
}

/// Checks the assembled tree at `dest` against the image's layers.
fn check_tree(dest: &Path) -> BTreeMap<String, Node> {
    let tree = snapshot(dest);
    assert_eq!(whiteout_names(&tree), Vec::<&String>::new());
    // Every layer writes the same paths, so the top one provides them all; each layer's own
    // file is whited out by the next.
    let top = LAYERS - 1;
    assert_eq!(
        fs::read_to_string(dest.join("d5/f5")).unwrap(),
        format!("layer {top} file 5\n").repeat(50)
    );
    let files = tree
        .values()
        .filter(|n| n.kind == rootfs_support::Kind::File);
    assert_eq!(files.count(), FILES + 1);
    assert!(tree.contains_key(&format!("only{top}")));
    tree
}

/// The cache holds exactly the image's layers, each complete, and no staging.
fn check_cache(home: &Path, diff_ids: &[Digest]) {
    let cache = LayerCache::open(home).unwrap();
    assert_eq!(cache.list().unwrap(), diff_ids);
    for d in diff_ids {
        let dir = cache.layer_dir(d);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["entries", "rootfs", "stamp"], "{}", dir.display());
    }
    assert_eq!(cache_staging(home), Vec::<String>::new());
}

fn race<F>(n: usize, f: F) -> Vec<AssembleReport>
where
    F: Fn(usize) -> AssembleReport + Sync,
{
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn threads_racing_for_one_destination_assemble_it_once() {
    let work = tempfile::tempdir().unwrap();
    let (store, diff_ids) = image(work.path());
    let dest = work.path().join("rootfs");
    let reports = race(2, |_| store.clone().unpack("many", &dest, false).unwrap());
    let mut methods: Vec<_> = reports.iter().map(|r| r.method).collect();
    methods.sort_by_key(|m| *m == Method::AlreadyComplete);
    assert_eq!(methods, [Method::CopyStack, Method::AlreadyComplete]);
    let worker = reports.iter().find(|r| r.method == Method::CopyStack);
    assert_eq!(worker.unwrap().extracted, LAYERS);
    check_tree(&dest);
    check_cache(store.home(), &diff_ids);
    assert_eq!(fallback_staging(work.path()), Vec::<String>::new());
}

#[test]
fn threads_sharing_a_cold_cache_extract_each_layer_once() {
    let work = tempfile::tempdir().unwrap();
    let (store, diff_ids) = image(work.path());
    let dests: Vec<PathBuf> = (0..3)
        .map(|i| work.path().join(format!("rootfs{i}")))
        .collect();
    let reports = race(dests.len(), |i| {
        store.clone().unpack("many", &dests[i], false).unwrap()
    });
    for r in &reports {
        assert_eq!(r.method, Method::CopyStack, "{r:?}");
    }
    let extracted: usize = reports.iter().map(|r| r.extracted).sum();
    assert_eq!(extracted, LAYERS, "{reports:?}");
    let first = check_tree(&dests[0]);
    for dest in &dests[1..] {
        assert_eq!(check_tree(dest), first);
    }
    check_cache(store.home(), &diff_ids);
}

/// Not a test on its own: the body of the processes that the next test spawns.
#[test]
fn helper_unpack_in_a_child_process() {
    let (Ok(home), Ok(dest), Ok(go)) = (
        std::env::var(HELPER_HOME),
        std::env::var(HELPER_DEST),
        std::env::var(HELPER_GO),
    ) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Path::new(&go).exists() {
        assert!(Instant::now() < deadline, "never told to go");
        std::thread::sleep(Duration::from_millis(1));
    }
    let store = Store::open(Path::new(&home)).unwrap();
    let report = store.unpack("many", Path::new(&dest), false).unwrap();
    println!("RESULT {:?} {}", report.method, report.extracted);
}

#[test]
fn processes_sharing_a_cold_cache_extract_each_layer_once() {
    let work = tempfile::tempdir().unwrap();
    let (store, diff_ids) = image(work.path());
    let go = work.path().join("go");
    let dests: Vec<PathBuf> = (0..2)
        .map(|i| work.path().join(format!("rootfs{i}")))
        .collect();
    let children: Vec<_> = dests
        .iter()
        .map(|dest| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "helper_unpack_in_a_child_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(HELPER_HOME, store.home())
                .env(HELPER_DEST, dest)
                .env(HELPER_GO, &go)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    fs::write(&go, b"").unwrap();
    let mut extracted = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "helper failed: {stdout}");
        let result = stdout
            .lines()
            .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("no result in {stdout}"));
        let (method, n) = result.split_once(' ').unwrap();
        assert_eq!(method, "CopyStack");
        extracted += n.parse::<usize>().unwrap();
    }
    assert_eq!(extracted, LAYERS, "each layer extracted by one process");
    assert_eq!(check_tree(&dests[0]), check_tree(&dests[1]));
    check_cache(store.home(), &diff_ids);
}
