//! Imported images: one record per name under `<home>/images/refs/`, and listing, lookup
//! and removal (with garbage collection of blobs no image refers to any more).
//!
//! A record file is named by the sha256 of the image name, so any valid name maps to a short,
//! safe file name; the name itself is inside. Records are written to a temporary file and
//! renamed into place, so a record is either absent or complete — and it is written last,
//! after every blob it names is stored.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::spec::{
    Compression, ImageConfig, ImageManifest, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES,
    layer_compression, parse_config, parse_json, parse_manifest, validate_image,
};
use crate::store::{Store, sync_parent};

/// Longest image name accepted: docker's limit for a full reference.
pub const MAX_NAME_BYTES: usize = 255;
/// Largest record file read back: records are written by this crate and stay a few KiB even at
/// [`crate::spec::MAX_LAYERS`] layers.
const MAX_RECORD_BYTES: u64 = 1 << 20;
/// Shortest digest prefix accepted as an image reference, so a stray short word does not match.
const MIN_DIGEST_PREFIX: usize = 4;
/// Length of the short image id (a config digest prefix), as docker prints it.
const SHORT_ID_LEN: usize = 12;

/// What the store remembers about one imported image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The name the image was imported under.
    pub name: String,
    /// Digest of the image manifest blob.
    pub manifest_digest: Digest,
    /// Digest of the image config blob.
    pub config_digest: Digest,
    /// The layers, base first.
    pub layers: Vec<LayerRecord>,
    /// When the image was built, as its config says (RFC 3339), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it was imported, in seconds since the Unix epoch.
    pub imported_at: u64,
    /// CPU architecture the image is for.
    pub architecture: String,
    /// Bytes of all blobs of the image (manifest, config, compressed layers).
    pub size: u64,
}

/// One layer of an imported image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the stored (possibly compressed) blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar, from the image config.
    pub diff_id: Digest,
    /// Size of the stored blob.
    pub size: u64,
    /// The layer media type, which says how it is compressed.
    pub media_type: String,
}

impl LayerRecord {
    /// How the layer blob is compressed.
    pub fn compression(&self) -> Result<Compression> {
        layer_compression(&self.media_type)
    }
}

impl ImageRecord {
    /// The short image id: the first 12 hex digits of the config digest, as docker shows.
    pub fn short_id(&self) -> &str {
        short_id(&self.config_digest)
    }

    /// Every blob the image needs.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        [&self.manifest_digest, &self.config_digest]
            .into_iter()
            .chain(self.layers.iter().map(|l| &l.digest))
    }

    /// Builds a record from a stored manifest and config.
    pub(crate) fn new(
        name: String,
        manifest_digest: Digest,
        manifest_size: u64,
        manifest: &ImageManifest,
        config: &ImageConfig,
    ) -> Result<ImageRecord> {
        validate_image(manifest, config)?;
        let layers: Vec<LayerRecord> = manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(l, diff_id)| LayerRecord {
                digest: l.digest.clone(),
                diff_id: diff_id.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
            })
            .collect();
        let size = manifest_size
            .saturating_add(manifest.config.size)
            .saturating_add(layers.iter().map(|l| l.size).fold(0, u64::saturating_add));
        let imported_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(ImageRecord {
            name,
            manifest_digest,
            config_digest: manifest.config.digest.clone(),
            layers,
            created: config.created.clone(),
            imported_at,
            architecture: config.architecture.clone(),
            size,
        })
    }
}

/// The short id of an image whose config has digest `config`.
pub(crate) fn short_id(config: &Digest) -> &str {
    &config.hex()[..SHORT_ID_LEN]
}

/// An imported image: its record plus its parsed manifest and config.
#[derive(Debug, Clone)]
pub struct Image {
    /// What the store remembers about it.
    pub record: ImageRecord,
    /// The image manifest.
    pub manifest: ImageManifest,
    /// The image config (how to run it, diff_ids).
    pub config: ImageConfig,
}

/// What garbage collection freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: usize,
    /// Bytes those blobs took.
    pub bytes_freed: u64,
}

/// Checks that `name` can name an image: 1 to 255 bytes of `[A-Za-z0-9._-/:@+]`, not starting
/// with `-` or `.` (which would read as an option or a hidden file).
pub fn validate_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-/:@+".contains(c);
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("it is longer than 255 bytes")
    } else if name.starts_with(['-', '.']) {
        Some("it starts with '-' or '.'")
    } else if !name.chars().all(ok_char) {
        Some("only letters, digits and . _ - / : @ + are allowed")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(r) => Err(Error::Invalid(format!(
            "invalid image name {:?}: {r}",
            crate::spec::truncate(name)
        ))),
    }
}

impl Store {
    /// All imported images, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.refs_dir();
        let mut out = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|e| Error::io("listing images in", &dir, e))?;
        for entry in entries {
            let path = entry
                .map_err(|e| Error::io("listing images in", &dir, e))?
                .path();
            if path.extension().is_some_and(|e| e == "json") {
                out.push(read_record(&path)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The record for `name_or_digest`: an image name, a name without its `:latest` tag, or a
    /// prefix (at least 4 hex digits, optionally `sha256:`) of a manifest or config digest.
    pub fn record(&self, name_or_digest: &str) -> Result<ImageRecord> {
        if validate_name(name_or_digest).is_ok() {
            if let Some(r) = self.record_by_name(name_or_digest)? {
                return Ok(r);
            }
            let last = name_or_digest.rsplit('/').next().unwrap_or(name_or_digest);
            if !last.contains(':') && !name_or_digest.contains('@') {
                if let Some(r) = self.record_by_name(&format!("{name_or_digest}:latest"))? {
                    return Ok(r);
                }
            }
        }
        let unknown = || Error::UnknownImage {
            name: crate::spec::truncate(name_or_digest),
        };
        let (alg, prefix) = match name_or_digest.split_once(':') {
            Some((alg, hex)) => (Some(alg), hex),
            None => (None, name_or_digest),
        };
        if prefix.len() < MIN_DIGEST_PREFIX
            || !prefix
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(unknown());
        }
        let matches = |d: &Digest| {
            alg.is_none_or(|a| a == d.algorithm().name()) && d.hex().starts_with(prefix)
        };
        let found: Vec<ImageRecord> = self
            .list()?
            .into_iter()
            .filter(|r| matches(&r.manifest_digest) || matches(&r.config_digest))
            .collect();
        let distinct: BTreeSet<&Digest> = found.iter().map(|r| &r.manifest_digest).collect();
        match distinct.len() {
            0 => Err(unknown()),
            1 => Ok(found.into_iter().next().ok_or_else(unknown)?),
            n => Err(Error::Invalid(format!(
                "{name_or_digest:?} matches {n} different images; give more digits or a name"
            ))),
        }
    }

    /// The image `name_or_digest` (see [`Store::record`]) with its manifest and config.
    pub fn get(&self, name_or_digest: &str) -> Result<Image> {
        let record = self.record(name_or_digest)?;
        let what = format!("manifest of image {}", record.name);
        let bytes = self.read_blob(&record.manifest_digest, MAX_MANIFEST_BYTES, &what)?;
        let manifest = parse_manifest(&bytes, &what)?;
        let what = format!("config of image {}", record.name);
        let bytes = self.read_blob(&record.config_digest, MAX_CONFIG_BYTES, &what)?;
        let config = parse_config(&bytes, &what)?;
        validate_image(&manifest, &config)?;
        Ok(Image {
            record,
            manifest,
            config,
        })
    }

    /// Removes image `name_or_digest` (see [`Store::record`]) and then every blob no remaining
    /// image refers to.
    pub fn remove(&self, name_or_digest: &str) -> Result<GcReport> {
        let _lock = self.lock_exclusive()?;
        let record = self.record(name_or_digest)?;
        if record.name != name_or_digest {
            let others: Vec<String> = self
                .list()?
                .into_iter()
                .filter(|r| r.manifest_digest == record.manifest_digest)
                .map(|r| r.name)
                .collect();
            if others.len() > 1 {
                return Err(Error::Invalid(format!(
                    "image {name_or_digest} has several names ({}); remove them by name",
                    others.join(", ")
                )));
            }
        }
        let path = self.record_path(&record.name);
        fs::remove_file(&path).map_err(|e| Error::io("removing image record", &path, e))?;
        sync_parent(&path)?;
        self.collect_garbage()
    }

    /// Deletes every blob no image refers to, and leftovers of interrupted imports.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock_exclusive()?;
        self.collect_garbage()
    }

    /// [`Store::gc`] for callers that hold the exclusive lock.
    pub(crate) fn collect_garbage(&self) -> Result<GcReport> {
        let live: BTreeSet<Digest> = self
            .list()?
            .iter()
            .flat_map(|r| r.blobs().cloned())
            .collect();
        let mut report = GcReport::default();
        for blob in self.blobs()? {
            if !live.contains(&blob) {
                report.bytes_freed += self.remove_blob(&blob)?;
                report.blobs_removed += 1;
            }
        }
        self.clean_tmp()?;
        self.clean_partials()?;
        Ok(report)
    }

    /// Writes `record` atomically, replacing any record of the same name; returns the replaced
    /// record. Every blob it names must already be stored.
    pub(crate) fn write_record(&self, record: &ImageRecord) -> Result<Option<ImageRecord>> {
        validate_name(&record.name)?;
        for blob in record.blobs() {
            if !self.has_blob(blob) {
                return Err(Error::Invalid(format!(
                    "image {}: blob {blob} is not in the store",
                    record.name
                )));
            }
        }
        let path = self.record_path(&record.name);
        let old = match path.exists() {
            true => Some(read_record(&path)?),
            false => None,
        };
        let tmp_dir = self.tmp_dir();
        let mut tmp = tempfile::Builder::new()
            .prefix(".record-")
            .tempfile_in(&tmp_dir)
            .map_err(|e| Error::io("creating temporary file in", &tmp_dir, e))?;
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::Invalid(format!("encoding image record: {e}")))?;
        tmp.write_all(&json)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| Error::io("writing image record", tmp.path(), e))?;
        tmp.persist(&path)
            .map_err(|e| Error::io("saving image record", &path, e.error))?;
        sync_parent(&path)?;
        Ok(old)
    }

    /// Records the image whose manifest `manifest_digest` (and its config and every layer) is
    /// already stored as `name`, replacing any image of that name; returns the new record and
    /// the replaced one. This is how a pull, which stores blobs itself, finishes.
    pub fn commit_image(
        &self,
        name: &str,
        manifest_digest: &Digest,
    ) -> Result<(ImageRecord, Option<ImageRecord>)> {
        validate_name(name)?;
        let what = format!("manifest of image {name}");
        let bytes = self.read_blob(manifest_digest, MAX_MANIFEST_BYTES, &what)?;
        let manifest = parse_manifest(&bytes, &what)?;
        let what = format!("config of image {name}");
        let config_bytes = self.read_blob(&manifest.config.digest, MAX_CONFIG_BYTES, &what)?;
        let config = parse_config(&config_bytes, &what)?;
        let record = ImageRecord::new(
            name.to_string(),
            manifest_digest.clone(),
            bytes.len() as u64,
            &manifest,
            &config,
        )?;
        let replaced = self.write_record(&record)?;
        Ok((record, replaced))
    }

    fn record_by_name(&self, name: &str) -> Result<Option<ImageRecord>> {
        let path = self.record_path(name);
        match fs::metadata(&path) {
            Ok(_) => {
                let r = read_record(&path)?;
                Ok((r.name == name).then_some(r))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading image record", path, e)),
        }
    }

    fn record_path(&self, name: &str) -> PathBuf {
        let key = Digest::of(Algorithm::Sha256, name.as_bytes());
        self.refs_dir().join(format!("{}.json", key.hex()))
    }
}

fn read_record(path: &std::path::Path) -> Result<ImageRecord> {
    let file = fs::File::open(path).map_err(|e| Error::io("reading image record", path, e))?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, MAX_RECORD_BYTES + 1), &mut bytes)
        .map_err(|e| Error::io("reading image record", path, e))?;
    let what = format!(
        "image record {} (remove the file to forget the image)",
        path.display()
    );
    crate::spec::check_len(&bytes, MAX_RECORD_BYTES, &what)?;
    parse_json(&bytes, &what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for ok in [
            "demo",
            "alpine:3.19",
            "docker.io/library/alpine:latest",
            "a@sha256:00",
            "x+y_z-1",
        ] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "-rf",
            ".hidden",
            "a b",
            "a\nb",
            "é",
            &"a".repeat(256),
            "a%2f",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
