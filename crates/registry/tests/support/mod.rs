//! Helpers shared by the integration tests: fast retry policies, a throwaway store home,
//! images built and pushed with the fixture, credential files, and checks of what a pull
//! left in the store and the layer cache.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use oci_layers::{Digest, LayerCache, Store};
use registry::{
    Client, ClientOptions, CredentialFiles, PullOptions, Pulled, Reference, RetryPolicy,
};
use registry_fixture::images::{Credentials, ImageSpec, Layer, MediaKind, PushedImage, Pusher};

/// Retries that keep failing tests fast.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

/// Default options with [`fast_retry`] and no credential files at all.
pub fn options() -> ClientOptions {
    let mut o = ClientOptions::default();
    o.retry = fast_retry();
    o.credentials = CredentialFiles::default();
    o
}

/// Options reading credentials from the docker config at `config`.
pub fn options_with_config(config: &Path) -> ClientOptions {
    let mut o = options();
    o.credentials = CredentialFiles {
        docker_config: Some(config.to_path_buf()),
        podman_auth: Vec::new(),
    };
    o
}

/// A client with [`options`].
pub fn client() -> Client {
    Client::new(options()).unwrap()
}

/// A store and layer cache in a fresh temp dir (or in a given directory).
pub struct Home {
    _dir: Option<tempfile::TempDir>,
    pub path: PathBuf,
    pub store: Store,
    pub cache: LayerCache,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("registry-tests-")
            .tempdir()
            .unwrap();
        let mut home = Home::at(dir.path());
        home._dir = Some(dir);
        home
    }

    pub fn at(path: &Path) -> Home {
        Home {
            _dir: None,
            path: path.to_path_buf(),
            store: Store::open(path).unwrap(),
            cache: LayerCache::open(path).unwrap(),
        }
    }

    /// Pulls `reference` with `options`, extracting into the cache.
    pub async fn pull_with(
        &self,
        client: &Client,
        reference: &str,
        options: &PullOptions,
    ) -> registry::Result<Pulled> {
        let reference = Reference::parse(reference)?;
        client
            .pull(&self.store, Some(&self.cache), &reference, options)
            .await
    }

    /// Pulls `reference` with default options.
    pub async fn pull(&self, client: &Client, reference: &str) -> registry::Result<Pulled> {
        self.pull_with(client, reference, &PullOptions::default())
            .await
    }

    /// Whether the store holds blob `digest` (`sha256:…`).
    pub fn has_blob(&self, digest: &str) -> bool {
        self.store.has_blob(&digest.parse::<Digest>().unwrap())
    }

    /// How many image records the store has.
    pub fn records(&self) -> usize {
        self.store.list().unwrap().len()
    }

    /// Asserts nothing of a failed pull is visible: no record, no blob of `layer`.
    pub fn assert_nothing_visible(&self, layer: &Layer) {
        assert_eq!(self.records(), 0, "a failed pull left a record");
        assert!(
            !self.has_blob(layer.digest()),
            "a failed pull left blob {} visible",
            layer.digest()
        );
    }
}

/// A layer of `files` files of `bytes` pseudo-random (incompressible) bytes each, under
/// `layer-<seed>/`.
pub fn layer(seed: u64, files: usize, bytes: usize) -> Layer {
    Layer::random_files(seed, files, bytes).unwrap()
}

/// Three small layers with seeds `seed`, `seed + 1`, `seed + 2`.
pub fn three_layers(seed: u64) -> Vec<Layer> {
    (0..3).map(|i| layer(seed + i, 2, 20_000)).collect()
}

/// Pushes an image of `layers` with `media` to `host` anonymously.
pub fn push(
    host: &str,
    repo: &str,
    tag: &str,
    layers: Vec<Layer>,
    media: MediaKind,
) -> PushedImage {
    push_as(host, Credentials::None, repo, tag, layers, media)
}

/// Pushes an image of `layers` with `media` to `host` as `creds`.
pub fn push_as(
    host: &str,
    creds: Credentials,
    repo: &str,
    tag: &str,
    layers: Vec<Layer>,
    media: MediaKind,
) -> PushedImage {
    let mut spec = ImageSpec::new(layers);
    spec.media = media;
    Pusher::new(host, creds)
        .push_image(repo, tag, &spec)
        .unwrap()
}

/// Writes a docker `config.json` under `dir` with `auths.<host>.auth = base64(user:pass)`.
pub fn docker_config(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    write_json(
        dir,
        "config.json",
        &serde_json::json!({ "auths": { host: { "auth": auth } } }),
    )
}

/// Writes `doc` as `dir/name`; returns the path.
pub fn write_json(dir: &Path, name: &str, doc: &serde_json::Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    path
}

/// Asserts that a pull of `image` went into `home` completely: the record names the manifest
/// and every layer, every layer blob is stored and extracted, and the files are there.
pub fn assert_pulled(home: &Home, pulled: &Pulled, image: &PushedImage, name: &str) {
    let record = &pulled.record;
    assert_eq!(record.name, name);
    assert_eq!(record.manifest_digest.to_string(), image.manifest_digest);
    assert_eq!(record.config_digest.to_string(), image.config_digest);
    assert_eq!(record.layers.len(), image.layers.len());
    let stored = home.store.record(name).unwrap();
    assert_eq!(&stored, record);
    assert!(home.has_blob(&image.manifest_digest));
    assert!(home.has_blob(&image.config_digest));
    for (got, want) in record.layers.iter().zip(&image.layers) {
        assert_eq!(got.digest.to_string(), want.digest());
        assert_eq!(got.diff_id.to_string(), want.diff_id());
        assert!(
            home.has_blob(want.digest()),
            "layer {} not stored",
            want.digest()
        );
        let cached = home
            .cache
            .lookup(&got.diff_id)
            .unwrap()
            .unwrap_or_else(|| panic!("layer {} not extracted", want.diff_id()));
        assert_layer_files(&cached.root, want);
    }
}

/// Asserts the tree of a [`layer`] is under `root`: its directory, a first file of the
/// right size whose bytes hash into the layer, and the symlink.
pub fn assert_layer_files(root: &Path, layer: &Layer) {
    // Layer::random_files names its directory after the seed; find it.
    let dirs: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("layer-"))
        })
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "layer tree under {}: {dirs:?}",
        root.display()
    );
    let dir = &dirs[0];
    let first = dir.join("file-0.bin");
    let len = std::fs::metadata(&first).unwrap().len();
    assert!(len > 0, "{} is empty", first.display());
    assert_eq!(
        std::fs::read_link(dir.join("link")).unwrap(),
        Path::new("file-0.bin")
    );
    // The extracted files hold the layer's bytes: they sum to the tar less its headers.
    let files: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.metadata().unwrap().len())
        .collect();
    let total: u64 = files.iter().sum();
    let overhead = 1024 * (files.len() as u64 + 3);
    assert!(
        total <= layer.tar_len() && layer.tar_len() - total < overhead,
        "{} holds {total} bytes in {} files; the layer's tar has {}",
        dir.display(),
        files.len(),
        layer.tar_len()
    );
}

/// Asserts `err`'s text contains every one of `parts`.
pub fn assert_err_contains(err: &registry::Error, parts: &[&str]) {
    let text = err.to_string();
    eprintln!("expected error: {text}");
    for part in parts {
        assert!(
            text.contains(part),
            "error {text:?} does not contain {part:?}"
        );
    }
}

/// The error of a pull that must fail.
pub fn expect_err<T: std::fmt::Debug>(result: registry::Result<T>) -> registry::Error {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}
