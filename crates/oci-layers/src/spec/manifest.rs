//! Descriptors, image manifests and image indexes (OCI and docker v2 schema 2).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::media::{self, truncate};
use super::{
    MAX_BLOB_BYTES, MAX_CONFIG_BYTES, MAX_INDEX_MANIFESTS, MAX_LAYERS, MAX_MANIFEST_BYTES,
    null_default,
};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// Annotation naming the reference (tag or full name) of a manifest in an OCI layout's index.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd and docker put on index entries with the full image name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Annotation buildkit puts on attestation manifests, which are not runnable images.
const ANNOTATION_DOCKER_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// A reference to a blob: its media type, digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// The blob's content digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The platform an index entry is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Free-form metadata.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor without platform or annotations.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The value of annotation `key`, if present.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }
}

/// The platform (OS and CPU architecture) an image runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in GOARCH terms (`amd64`, `arm64` …).
    #[serde(default)]
    pub architecture: String,
    /// Operating system in GOOS terms (`linux`).
    #[serde(default)]
    pub os: String,
    /// CPU variant (`v8` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine: linux and the host's CPU architecture.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            other => other,
        };
        Platform {
            architecture: architecture.to_string(),
            os: "linux".to_string(),
            variant: None,
        }
    }
}

impl Platform {
    /// Whether an index entry for `entry` can run where `self` is asked for: same OS and
    /// architecture, and the same variant when one is asked for (`arm64` is `v8` unless it
    /// says otherwise, as docker reads it).
    pub fn accepts(&self, entry: &Platform) -> bool {
        if entry.os != self.os || entry.architecture != self.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(want) => {
                entry
                    .variant
                    .as_deref()
                    .or(default_variant(&entry.architecture))
                    == Some(want.as_str())
            }
        }
    }

    /// Sort key among accepted entries: the exact or default variant first.
    fn variant_rank(&self, entry: &Platform) -> u8 {
        let default = default_variant(&entry.architecture);
        match entry.variant.as_deref() {
            None => 0,
            v if v == default => 0,
            _ => 1,
        }
    }
}

/// The variant an architecture has when an image does not name one.
fn default_variant(architecture: &str) -> Option<&'static str> {
    match architecture {
        "arm64" => Some("v8"),
        _ => None,
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", truncate(&self.os), truncate(&self.architecture))?;
        if let Some(v) = &self.variant {
            write!(f, "/{}", truncate(v))?;
        }
        Ok(())
    }
}

/// An image manifest: one config blob and the ordered layer blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type, when it states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, base first.
    #[serde(default, deserialize_with = "null_default")]
    pub layers: Vec<Descriptor>,
    /// Free-form metadata.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// Checks what the rest of the crate relies on: schema version, media types, counts, sizes.
    pub fn validate(&self) -> Result<()> {
        check_schema_version(self.schema_version, "image manifest")?;
        if let Some(t) = &self.media_type {
            if !media::is_manifest(t) {
                return Err(Error::UnsupportedMediaType {
                    what: "image manifest".into(),
                    media_type: truncate(t),
                });
            }
        }
        if !media::is_config(&self.config.media_type) {
            return Err(Error::UnsupportedMediaType {
                what: format!(
                    "config {} (this is not a container image)",
                    self.config.digest
                ),
                media_type: truncate(&self.config.media_type),
            });
        }
        check_size(&self.config, MAX_CONFIG_BYTES, "config")?;
        if self.layers.len() > MAX_LAYERS {
            return Err(Error::Invalid(format!(
                "image manifest has {} layers; at most {MAX_LAYERS} are supported",
                self.layers.len()
            )));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            media::layer_compression(&layer.media_type).map_err(|_| {
                Error::UnsupportedMediaType {
                    what: format!("layer {}/{} ({})", i + 1, self.layers.len(), layer.digest),
                    media_type: truncate(&layer.media_type),
                }
            })?;
            check_size(layer, MAX_BLOB_BYTES, "layer")?;
        }
        Ok(())
    }
}

/// An image index (or docker manifest list): manifests for several platforms or names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type, when it states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests (or nested indexes) listed.
    #[serde(default, deserialize_with = "null_default")]
    pub manifests: Vec<Descriptor>,
    /// Free-form metadata.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    /// Checks schema version, media type, entry count and entry sizes.
    pub fn validate(&self) -> Result<()> {
        check_schema_version(self.schema_version, "image index")?;
        if let Some(t) = &self.media_type {
            if !media::is_index(t) {
                return Err(Error::UnsupportedMediaType {
                    what: "image index".into(),
                    media_type: truncate(t),
                });
            }
        }
        if self.manifests.len() > MAX_INDEX_MANIFESTS {
            return Err(Error::Invalid(format!(
                "image index lists {} manifests; at most {MAX_INDEX_MANIFESTS} are supported",
                self.manifests.len()
            )));
        }
        for m in &self.manifests {
            if media::is_manifest(&m.media_type) || media::is_index(&m.media_type) {
                check_size(m, MAX_MANIFEST_BYTES, "manifest")?;
            }
        }
        Ok(())
    }

    /// Picks the manifest (or nested index) to run on `platform`.
    ///
    /// Entries that are neither manifests nor indexes, and attestation manifests, are skipped.
    /// Among the rest: the one whose platform matches, else the only one.
    pub fn select(&self, platform: &Platform) -> Result<&Descriptor> {
        let candidates: Vec<&Descriptor> = self.manifests.iter().filter(|d| runnable(d)).collect();
        let matching: Vec<&Descriptor> = candidates
            .iter()
            .copied()
            .filter(|d| d.platform.as_ref().is_some_and(|p| platform.accepts(p)))
            .collect();
        // With no variant asked for, the entry that names none (or the default one) wins.
        let mut matching = matching;
        matching.sort_by_key(|d| d.platform.as_ref().map(|p| platform.variant_rank(p)));
        match (matching.as_slice(), candidates.as_slice()) {
            ([one, ..], _) => Ok(one),
            // An entry naming no platform is taken as the image; one naming another is not.
            ([], [only]) if only.platform.is_none() => Ok(only),
            ([], []) => Err(Error::Invalid(
                "image index lists no image manifest".to_string(),
            )),
            ([], many) => {
                let platforms: Vec<String> = many
                    .iter()
                    .take(20)
                    .map(|d| match &d.platform {
                        Some(p) => p.to_string(),
                        None => format!("(no platform) {}", d.digest),
                    })
                    .collect();
                Err(Error::Invalid(format!(
                    "image index has no manifest for {platform}; it has: {}",
                    platforms.join(", ")
                )))
            }
        }
    }
}

/// Whether an index entry can be an image to run (not an attestation or other artifact).
fn runnable(d: &Descriptor) -> bool {
    if !(media::is_manifest(&d.media_type) || media::is_index(&d.media_type)) {
        return false;
    }
    if d.annotation(ANNOTATION_DOCKER_REFERENCE_TYPE).is_some() {
        return false;
    }
    !d.platform
        .as_ref()
        .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
}

fn check_schema_version(v: u32, what: &str) -> Result<()> {
    if v == 2 {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} has schemaVersion {v}; only 2 is supported"
        )))
    }
}

fn check_size(d: &Descriptor, max: u64, what: &str) -> Result<()> {
    if d.size > max {
        return Err(Error::Invalid(format!(
            "{what} {} claims {} bytes; at most {max} are supported",
            d.digest, d.size
        )));
    }
    Ok(())
}
