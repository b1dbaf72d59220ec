//! Importing images into the store from an OCI image layout (a directory, or packed in a tar)
//! or a `docker save` archive (the legacy layout, or the newer one that embeds an OCI layout).
//!
//! Every blob is verified against its digest while it is written to the store; the image
//! record is written last, so a failed import leaves no image behind.

mod docker_archive;
mod layout;
mod source;

use std::io::Read;
use std::path::Path;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::image::{ImageRecord, short_id, validate_name};
use crate::progress::Progress;
use crate::spec::{Compression, Descriptor, ImageConfig, ImageManifest};
use crate::store::Store;

pub use source::MAX_ARCHIVE_ENTRIES;
use source::Source;

/// What an importer stored: the image's manifest (stored) and config, and the names the
/// source gives it, best first.
struct Imported {
    manifest_digest: Digest,
    manifest_size: u64,
    manifest: ImageManifest,
    config: ImageConfig,
    names: Vec<String>,
}

impl Store {
    /// Imports the image at `path` (an OCI layout directory, an OCI layout in a tar, or a
    /// `docker save` archive) and records it as `name`, or else under the name the source
    /// gives it, or else its short id. Re-importing an image is cheap and changes nothing.
    ///
    /// With `progress`, a bar per layer is drawn when stderr is a terminal.
    pub fn import(&self, path: &Path, name: Option<&str>, progress: bool) -> Result<ImageRecord> {
        if let Some(n) = name {
            validate_name(n)?;
        }
        match self.import_locked(path, name, progress) {
            Ok((record, replaced)) => {
                if replaced.is_some_and(|old| old.manifest_digest != record.manifest_digest) {
                    // The name moved to another image, whose old blobs may be unreferenced now.
                    self.collect_if_idle();
                }
                Ok(record)
            }
            Err(e) => {
                // Blobs this import stored before failing are referenced by no record.
                self.collect_if_idle();
                Err(e)
            }
        }
    }

    fn import_locked(
        &self,
        path: &Path,
        name: Option<&str>,
        progress: bool,
    ) -> Result<(ImageRecord, Option<ImageRecord>)> {
        let source = Source::open(path)?;
        // Held until the record is written, so garbage collection cannot delete blobs this
        // import stored but no record names yet.
        let _lock = self.lock_shared()?;
        let imported = if source.exists("oci-layout") {
            layout::import(self, &source, name, progress)?
        } else if source.exists("manifest.json") {
            docker_archive::import(self, &source, name, progress)?
        } else {
            return Err(Error::Invalid(format!(
                "{} is not an image: expected an OCI image layout (oci-layout, index.json) \
                 or a `docker save` archive (manifest.json)",
                source.describe()
            )));
        };
        let name = match name {
            Some(n) => n.to_string(),
            None => imported
                .names
                .iter()
                .find(|n| validate_name(n).is_ok())
                .cloned()
                .unwrap_or_else(|| short_id(&imported.manifest.config.digest).to_string()),
        };
        let record = ImageRecord::new(
            name,
            imported.manifest_digest,
            imported.manifest_size,
            &imported.manifest,
            &imported.config,
        )?;
        let replaced = self.write_record(&record)?;
        Ok((record, replaced))
    }

    /// Collects garbage if no other process is using the store; otherwise leaves it for later.
    fn collect_if_idle(&self) {
        if let Ok(Some(_lock)) = crate::lock::FileLock::try_exclusive(&self.root().join("lock")) {
            // Best effort: a failure here must not turn a finished import into an error, and
            // the next removal collects again.
            let _ = self.collect_garbage();
        }
    }
}

/// Copies one layer blob from `source` into the store, verified against `desc`.
fn copy_layer(
    store: &Store,
    source: &Source,
    rel: &str,
    desc: &Descriptor,
    what: &str,
    progress: bool,
) -> Result<u64> {
    let (reader, _) = source.open_file(rel)?;
    let bar = bar(progress, what, desc.size);
    let n = store.put_blob(reader, &desc.digest, Some(desc.size), what, &bar);
    bar.finish();
    n
}

/// A byte bar for one blob when asked for, else a hidden one; labelled with the start of
/// `what` ("layer 2/5").
fn bar(progress: bool, what: &str, size: u64) -> Progress {
    if progress {
        Progress::bytes(what.split(" (").next().unwrap_or(what), Some(size))
    } else {
        Progress::hidden()
    }
}

/// Checks that the stored blob `digest`, decompressed, hashes to `diff_id`.
fn verify_diff_id(
    store: &Store,
    digest: &Digest,
    compression: Compression,
    diff_id: &Digest,
    what: &str,
) -> Result<()> {
    let file = store.open_blob(digest)?;
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(file)
                .map_err(|e| Error::Invalid(format!("decompressing {what}: {e}")))?,
        ),
    };
    let mut hasher = Hasher::new(diff_id.algorithm());
    let mut reader = reader;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Invalid(format!("decompressing {what}: {e}"))),
        };
        hasher.update(&buf[..n]);
    }
    let actual = hasher.finish();
    if actual != *diff_id {
        return Err(Error::DigestMismatch {
            what: format!("uncompressed {what} (its diff_id in the image config)"),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}
