//! A whole pull: resolve the manifest, store it and the config, download the layers in
//! parallel and extract each into the layer cache as soon as it is in, then record the
//! image under its reference — the image is ready to run when the pull returns.

use std::sync::Arc;

use oci_layers::spec::{self, MAX_CONFIG_BYTES, Platform};
use oci_layers::{Digest, ImageRecord, LayerCache, Progress, Store};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::blob::{self, blocking};
use crate::client::{Client, Endpoint, read_capped, status_error};
use crate::error::{Error, Result};
use crate::manifest::{Resolved, resolve};
use crate::reference::Reference;

/// Layers downloaded at once unless the caller says otherwise: docker's default.
pub const DEFAULT_CONCURRENT_DOWNLOADS: usize = 3;
/// Most layers extracted at once: extraction is CPU (gunzip) and inode bound.
const CONCURRENT_EXTRACTIONS: usize = 2;

/// A callback that hears how a pull goes.
pub type ProgressFn = Arc<dyn Fn(&PullEvent) + Send + Sync>;

/// What a pull reports as it goes, for progress bars.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PullEvent {
    /// The manifest is known: what will be fetched.
    Resolved {
        /// The full reference.
        reference: String,
        /// The manifest's digest.
        digest: Digest,
        /// Each layer's digest and size, base first.
        layers: Vec<(Digest, u64)>,
    },
    /// Layer `index` has `bytes` of its size on disk (including a resumed part).
    Progress {
        /// Which layer (0-based).
        index: usize,
        /// Bytes on disk.
        bytes: u64,
    },
    /// Layer `index` is stored (downloaded now, or already there).
    Downloaded {
        /// Which layer.
        index: usize,
        /// Bytes received over the network for it (0 if it was stored already).
        received: u64,
    },
    /// Layer `index` is extracted into the layer cache.
    Extracted {
        /// Which layer.
        index: usize,
    },
}

/// How to pull.
#[derive(Clone)]
#[non_exhaustive]
pub struct PullOptions {
    /// The platform to pick from an index.
    pub platform: Platform,
    /// Layers downloaded at once (at least 1).
    pub max_concurrent_downloads: usize,
    /// The name the image is recorded under (default: the full reference).
    pub name: Option<String>,
    /// Hears progress.
    pub progress: Option<ProgressFn>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            max_concurrent_downloads: DEFAULT_CONCURRENT_DOWNLOADS,
            name: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("platform", &self.platform)
            .field("max_concurrent_downloads", &self.max_concurrent_downloads)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Pulled {
    /// The image as recorded.
    pub record: ImageRecord,
    /// The record this one replaced under the same name, if any.
    pub replaced: Option<ImageRecord>,
    /// The index the manifest was picked from, if any.
    pub index_digest: Option<Digest>,
    /// Bytes received over the network for layers.
    pub bytes_received: u64,
    /// Layers downloaded (not already stored).
    pub layers_downloaded: usize,
    /// Which registry host served it (a mirror, or the registry).
    pub served_by: String,
}

impl Client {
    /// Pulls `reference` into `store`, extracting layers into `cache` as they arrive (none:
    /// the first unpack extracts them); records it as `options.name` or the full reference.
    pub async fn pull(
        &self,
        store: &Store,
        cache: Option<&LayerCache>,
        reference: &Reference,
        options: &PullOptions,
    ) -> Result<Pulled> {
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| reference.to_string());
        oci_layers::image::validate_name(&name)?;
        // Held until the record is written: garbage collection must not take blobs this
        // pull stored that no record names yet.
        let lock = {
            let store = store.clone();
            blocking(move || store.lock_shared()).await??
        };
        let (ep, resolved) = self.resolve_any(reference, &options.platform).await?;
        let emit = |e: PullEvent| {
            if let Some(p) = &options.progress {
                p(&e);
            }
        };
        emit(PullEvent::Resolved {
            reference: reference.to_string(),
            digest: resolved.digest.clone(),
            layers: resolved
                .manifest
                .layers
                .iter()
                .map(|l| (l.digest.clone(), l.size))
                .collect(),
        });
        self.store_config(store, &ep, reference, &resolved).await?;
        let (bytes_received, layers_downloaded) = self
            .fetch_layers(store, cache, &ep, reference, &resolved, options)
            .await?;
        // The manifest last: a store holding it holds everything it names.
        let (record, replaced) = {
            let (store, digest, bytes) = (
                store.clone(),
                resolved.digest.clone(),
                resolved.bytes.clone(),
            );
            let what = format!("manifest of {reference}");
            blocking(move || -> Result<_> {
                put_document(&store, &bytes, &digest, &what)?;
                Ok(store.commit_image(&name, &digest)?)
            })
            .await??
        };
        drop(lock);
        Ok(Pulled {
            record,
            replaced,
            index_digest: resolved.index,
            bytes_received,
            layers_downloaded,
            served_by: ep.host,
        })
    }

    /// Resolves on the first endpoint that has the image (a mirror, then the registry).
    async fn resolve_any(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<(Endpoint, Resolved)> {
        let endpoints = self.endpoints(reference.registry());
        let last = endpoints.len().saturating_sub(1);
        for (i, ep) in endpoints.into_iter().enumerate() {
            match resolve(self, &ep, reference, platform).await {
                Ok(r) => return Ok((ep, r)),
                // A mirror that fails or lacks the image falls back to the registry.
                Err(_) if i < last => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Invalid(format!(
            "{reference}: no registry to pull from"
        )))
    }

    async fn store_config(
        &self,
        store: &Store,
        ep: &Endpoint,
        reference: &Reference,
        resolved: &Resolved,
    ) -> Result<()> {
        let desc = &resolved.manifest.config;
        if store.has_blob(&desc.digest) {
            return Ok(());
        }
        let what = format!("config {} of {reference}", desc.digest);
        let resp = self
            .get(
                ep,
                reference.repository(),
                &format!("blobs/{}", desc.digest),
                HeaderMap::new(),
                &format!("fetching {what}"),
            )
            .await?;
        if resp.status() != StatusCode::OK {
            let s = resp.status();
            return Err(status_error(&format!("fetching {what}"), ep, s, resp).await);
        }
        let bytes = read_capped(resp, MAX_CONFIG_BYTES.min(desc.size), &what).await?;
        let config = spec::parse_config(&bytes, &what)?;
        spec::validate_image(&resolved.manifest, &config)?;
        let (store, digest) = (store.clone(), desc.digest.clone());
        blocking(move || put_document(&store, &bytes, &digest, &what)).await??;
        Ok(())
    }

    /// Downloads and extracts every layer; returns (bytes received, layers downloaded).
    async fn fetch_layers(
        &self,
        store: &Store,
        cache: Option<&LayerCache>,
        ep: &Endpoint,
        reference: &Reference,
        resolved: &Resolved,
        options: &PullOptions,
    ) -> Result<(u64, usize)> {
        let config_digest = &resolved.manifest.config.digest;
        let what = format!("config of {reference}");
        let config = {
            let (store, digest) = (store.clone(), config_digest.clone());
            blocking(move || store.read_blob(&digest, MAX_CONFIG_BYTES, &what)).await??
        };
        let config = spec::parse_config(&config, "config")?;
        check_platform(reference, &config, &options.platform)?;
        let downloads = Arc::new(Semaphore::new(options.max_concurrent_downloads.max(1)));
        let extractions = Arc::new(Semaphore::new(CONCURRENT_EXTRACTIONS));
        let count = resolved.manifest.layers.len();
        let mut tasks = JoinSet::new();
        for (index, (desc, diff_id)) in resolved
            .manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .enumerate()
        {
            let job = LayerJob {
                client: self.clone(),
                ep: ep.clone(),
                repository: reference.repository().to_string(),
                desc: desc.clone(),
                diff_id: diff_id.clone(),
                store: store.clone(),
                cache: cache.cloned(),
                what: format!(
                    "layer {}/{count} ({}) of {reference}",
                    index + 1,
                    desc.digest
                ),
                index,
                progress: options.progress.clone(),
                downloads: downloads.clone(),
                extractions: extractions.clone(),
            };
            tasks.spawn(job.run());
        }
        let mut received = 0;
        let mut downloaded = 0;
        while let Some(joined) = tasks.join_next().await {
            let done =
                joined.map_err(|e| Error::Invalid(format!("a layer task failed: {e}")))??;
            received += done.received;
            downloaded += usize::from(!done.already_stored);
        }
        Ok((received, downloaded))
    }
}

/// Stores a small document (manifest, config) already in memory as blob `digest`.
fn put_document(store: &Store, bytes: &[u8], digest: &Digest, what: &str) -> Result<u64> {
    let size = Some(bytes.len() as u64);
    Ok(store.put_blob(bytes, digest, size, what, &Progress::hidden())?)
}

/// Refuses an image built for another platform than the one asked for (a single-platform
/// image has no index to choose from): its programs would not run.
fn check_platform(
    reference: &Reference,
    config: &spec::ImageConfig,
    want: &Platform,
) -> Result<()> {
    let have = Platform {
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        variant: config.variant.clone(),
    };
    // A config that names no platform is taken at its word that it runs anywhere.
    if have.architecture.is_empty() || have.os.is_empty() || want.accepts(&have) {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{reference} is an image for {have}, not {want}; pull it with --platform {have} \
         (its programs would not run here otherwise)"
    )))
}

/// One layer's download and extraction, as a task of its own.
struct LayerJob {
    client: Client,
    ep: Endpoint,
    repository: String,
    desc: oci_layers::spec::Descriptor,
    diff_id: Digest,
    store: Store,
    cache: Option<LayerCache>,
    what: String,
    index: usize,
    progress: Option<ProgressFn>,
    downloads: Arc<Semaphore>,
    extractions: Arc<Semaphore>,
}

impl LayerJob {
    async fn run(self) -> Result<blob::Downloaded> {
        let index = self.index;
        let emit = |e: PullEvent| {
            if let Some(p) = &self.progress {
                p(&e);
            }
        };
        let done = {
            let _permit = self
                .downloads
                .acquire()
                .await
                .map_err(|_| Error::Invalid("the download queue closed".into()))?;
            let on_bytes = |bytes: u64| emit(PullEvent::Progress { index, bytes });
            blob::download(
                &self.client,
                &self.ep,
                &self.repository,
                &self.desc,
                &self.store,
                &self.what,
                &on_bytes,
            )
            .await?
        };
        emit(PullEvent::Downloaded {
            index,
            received: done.received,
        });
        if let Some(cache) = self.cache {
            let _permit = self
                .extractions
                .acquire()
                .await
                .map_err(|_| Error::Invalid("the extraction queue closed".into()))?;
            let (store, desc, diff_id, what) =
                (self.store, self.desc, self.diff_id, self.what.clone());
            blocking(move || -> Result<()> {
                let compression = spec::layer_compression(&desc.media_type)?;
                let open = || -> oci_layers::Result<_> {
                    let file: Box<dyn std::io::Read + Send> =
                        Box::new(store.open_blob(&desc.digest)?);
                    Ok((file, compression))
                };
                cache.get_or_extract(&diff_id, open, &what, &Progress::hidden())?;
                Ok(())
            })
            .await??;
            emit(PullEvent::Extracted { index });
        }
        Ok(done)
    }
}
