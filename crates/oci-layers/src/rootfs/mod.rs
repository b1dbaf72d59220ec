//! Rootfs assembly: an image's layers stacked into one directory tree.
//!
//! The primary path is copy-based: every layer is extracted once into the layer cache, the
//! whiteout crate merges the layers' entry lists into one view (which layer provides each
//! path), and each surviving path is copied exactly once from the layer that provides it —
//! by reflink where the filesystem can, `copy_file_range` otherwise. Whiteouts and opaque
//! directories are thereby processed inline: what they hide is never copied at all. Should that
//! path fail (an unwritable or damaged cache, say), assembly falls back to extraction-based
//! stacking straight from the blobs: each layer is extracted next to the destination and its
//! surviving entries are renamed into place.

mod copy_stack;
mod extract_stack;
mod record;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

pub use record::{Record, State};

use crate::cache::{CachedLayer, LayerCache};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::lock::FileLock;
use crate::progress::Progress;
use crate::spec::Compression;

/// One layer of the image being assembled: where its blob is and what it must hash to.
pub struct LayerBlob {
    /// The digest of the uncompressed layer tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// The (possibly compressed) layer blob in the content store.
    pub blob: PathBuf,
    /// How the blob is compressed.
    pub compression: Compression,
    /// How to name this layer in errors, e.g. "image debian layer 2/5 (sha256:…)".
    pub what: String,
}

/// How assembly went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The destination already held a complete rootfs of this image; nothing was written.
    AlreadyComplete,
    /// Layers from the cache, each surviving path copied once.
    CopyStack,
    /// The fallback: layers extracted from their blobs straight into place.
    ExtractStack,
}

/// What assembly did.
#[derive(Debug, Clone)]
pub struct AssembleReport {
    /// Which path produced the rootfs.
    pub method: Method,
    /// Layers in the image.
    pub layers: usize,
    /// Layers that were not in the cache and were extracted by this call.
    pub extracted: usize,
    /// What the copy moved and how (reflink, copy_file_range, read/write).
    pub copy: fastcopy::Report,
    /// Why the copy-based path failed, when the fallback was used.
    pub fallback_reason: Option<String>,
}

/// Assembles the rootfs of the image `manifest` with `layers` (bottom first) into `dest`.
///
/// `lock_dir` holds the lock files that keep two processes from assembling into the same
/// destination at once. Idempotent: a destination that already holds a complete rootfs of this
/// image is left as it is; one left half-written by a killed process is cleared and redone; a
/// non-empty directory boxlite did not write is refused, never overwritten. Layers are
/// extracted (into the cache, or by the fallback) with the cache's
/// [`LayerCache::max_layer_bytes`].
pub fn assemble(
    cache: &LayerCache,
    manifest: &Digest,
    layers: &[LayerBlob],
    dest: &Path,
    lock_dir: &Path,
    progress: bool,
) -> Result<AssembleReport> {
    let max_layer_bytes = cache.max_layer_bytes();
    assemble_with(
        Ok(cache),
        manifest,
        layers,
        dest,
        lock_dir,
        progress,
        max_layer_bytes,
    )
}

/// [`assemble`] with a cache that may have failed to open, in which case the copy-based path
/// is skipped and the fallback builds the rootfs; the fallback extracts each layer with at
/// most `max_layer_bytes` unpacked.
fn assemble_with(
    cache: std::result::Result<&LayerCache, &Error>,
    manifest: &Digest,
    layers: &[LayerBlob],
    dest: &Path,
    lock_dir: &Path,
    progress: bool,
    max_layer_bytes: u64,
) -> Result<AssembleReport> {
    let record = Record {
        manifest: manifest.clone(),
        diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
    };
    std::fs::create_dir_all(lock_dir).map_err(|e| Error::io("creating", lock_dir, e))?;
    let _lock = FileLock::exclusive(&lock_dir.join(lock_name(dest)))?;
    let mut report = AssembleReport {
        method: Method::AlreadyComplete,
        layers: layers.len(),
        extracted: 0,
        copy: fastcopy::Report::default(),
        fallback_reason: None,
    };
    match record::state(dest)? {
        State::Complete(found) if found == record => return Ok(report),
        State::Complete(found) => {
            return Err(Error::Invalid(format!(
                "{} already holds the rootfs of another image ({}); remove it or choose another destination",
                dest.display(),
                found.manifest
            )));
        }
        State::Foreign => {
            return Err(Error::Invalid(format!(
                "{} is not empty and was not assembled by boxlite; remove it or choose another destination",
                dest.display()
            )));
        }
        State::Partial => clear(dest)?,
        State::Empty => {}
    }
    std::fs::create_dir_all(dest).map_err(|e| Error::io("creating", dest, e))?;
    record::mark_partial(dest)?;

    let primary = match cache {
        Ok(cache) => cached_layers(cache, layers, progress, &mut report)
            .and_then(|cached| copy_stack::copy(&cached, dest, progress)),
        Err(e) => Err(Error::Invalid(format!("the layer cache is unusable: {e}"))),
    };
    match primary {
        Ok(copy) => {
            report.method = Method::CopyStack;
            report.copy = copy;
        }
        Err(primary) => {
            clear(dest)?;
            report.fallback_reason = Some(primary.to_string());
            report.method = Method::ExtractStack;
            let fallback = extract_stack::extract(layers, dest, max_layer_bytes);
            report.copy = fallback.map_err(|fallback| {
                Error::Invalid(format!(
                    "assembling {}: {primary}; the extraction-based fallback failed too: {fallback}",
                    dest.display()
                ))
            })?;
        }
    }
    record::mark_complete(dest, &record)?;
    Ok(report)
}

/// Makes sure every layer is in the cache, extracting the missing ones in parallel.
fn cached_layers(
    cache: &LayerCache,
    layers: &[LayerBlob],
    progress: bool,
    report: &mut AssembleReport,
) -> Result<Vec<CachedLayer>> {
    let mut cached = Vec::with_capacity(layers.len());
    let mut missing = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        match cache.lookup(&layer.diff_id)? {
            Some(hit) => cached.push(Some(hit)),
            None => {
                cached.push(None);
                missing.push(i);
            }
        }
    }
    let total: u64 = missing
        .iter()
        .filter_map(|&i| std::fs::metadata(&layers[i].blob).ok())
        .map(|m| m.len())
        .sum();
    let bar = if progress && !missing.is_empty() {
        Progress::bytes("extracting", Some(total))
    } else {
        Progress::hidden()
    };
    // Counted by who opened a blob, not by who missed: a layer another thread or process
    // extracted while this call waited for its lock was not extracted by this call.
    let opened = AtomicUsize::new(0);
    let extracted: Result<Vec<(usize, CachedLayer)>> = missing
        .par_iter()
        .map(|&i| {
            let layer = &layers[i];
            let hit = cache.get_or_extract(
                &layer.diff_id,
                || {
                    opened.fetch_add(1, Ordering::Relaxed);
                    let file = std::fs::File::open(&layer.blob)
                        .map_err(|e| Error::io("opening layer blob", &layer.blob, e))?;
                    let reader: Box<dyn Read + Send> = Box::new(file);
                    Ok((reader, layer.compression))
                },
                &layer.what,
                &bar,
            )?;
            Ok((i, hit))
        })
        .collect();
    bar.finish();
    report.extracted = opened.into_inner();
    let extracted = extracted?;
    for (i, hit) in extracted {
        cached[i] = Some(hit);
    }
    cached
        .into_iter()
        .zip(layers)
        .map(|(hit, layer)| {
            hit.ok_or_else(|| {
                Error::Invalid(format!("{}: missing from the layer cache", layer.what))
            })
        })
        .collect()
}

/// Removes everything inside `dest`, keeping the directory (and its partial mark).
fn clear(dest: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dest).map_err(|e| Error::io("listing", dest, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io("listing", dest, e))?.path();
        fastcopy::remove_tree(&path)
            .map_err(|e| Error::Invalid(format!("clearing {}: {e}", dest.display())))?;
    }
    Ok(())
}

/// A lock file name unique to the destination's absolute path.
fn lock_name(dest: &Path) -> String {
    let absolute = std::path::absolute(dest).unwrap_or_else(|_| dest.to_path_buf());
    let digest = Digest::of(
        crate::Algorithm::Sha256,
        absolute.as_os_str().as_encoded_bytes(),
    );
    format!("rootfs-{}.lock", &digest.hex()[..32])
}

impl crate::store::Store {
    /// Assembles the rootfs of image `name_or_digest` into `dest`, with the layer cache that
    /// lives under the same state directory. Each layer not yet cached is extracted with at
    /// most [`Store::max_layer_bytes`](crate::Store::max_layer_bytes) unpacked; one over it
    /// fails the call and leaves nothing behind, in the cache or in `dest`.
    pub fn unpack(
        &self,
        name_or_digest: &str,
        dest: &Path,
        progress: bool,
    ) -> Result<AssembleReport> {
        // Shared: an `image rm` elsewhere must not collect these blobs while they are read.
        let _lock = self.lock_shared()?;
        let image = self.get(name_or_digest)?;
        // A cache that cannot even be opened (its directory unwritable, or a file in the way)
        // only rules out the copy-based path; the fallback needs no cache.
        let max_layer_bytes = self.max_layer_bytes();
        let cache =
            LayerCache::open(self.home()).map(|cache| cache.with_max_layer_bytes(max_layer_bytes));
        let count = image.record.layers.len();
        let layers = image
            .record
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                Ok(LayerBlob {
                    diff_id: layer.diff_id.clone(),
                    blob: self.blob_path(&layer.digest),
                    compression: layer.compression()?,
                    what: format!(
                        "image {} layer {}/{count} ({})",
                        image.record.name,
                        i + 1,
                        layer.digest
                    ),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        assemble_with(
            cache.as_ref(),
            &image.record.manifest_digest,
            &layers,
            dest,
            &self.home().join("locks"),
            progress,
            max_layer_bytes,
        )
    }
}
