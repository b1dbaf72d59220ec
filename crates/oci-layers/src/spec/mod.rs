//! OCI and docker image formats: types, media types, size caps and defensive parsing.
//!
//! Every JSON document here comes from an untrusted image. It is read only up to a size cap,
//! parsed with serde (whose recursion limit bounds nesting), then validated so that the rest
//! of the crate can rely on counts, sizes, media types and digests.

mod config;
mod docker;
mod manifest;
mod media;

pub use config::{History, ImageConfig, RootFs, RunConfig};
pub use docker::{DockerArchiveImage, validate_docker_manifest};
pub use manifest::{
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Descriptor, ImageIndex, ImageManifest,
    Platform,
};
pub use media::*;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// Largest manifest or index accepted: the limit registries (distribution, Docker Hub) enforce,
/// so no real image is larger.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest image config accepted: configs carry history and labels and run larger than
/// manifests, but real ones stay well under a megabyte.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;
/// Most layers per image: overlayfs and the kernel's mount-option page limit make deeper
/// stacks impractical, and docker itself stops at 127.
pub const MAX_LAYERS: usize = 256;
/// Most entries in an image index: multi-platform indexes list a few dozen at most.
pub const MAX_INDEX_MANIFESTS: usize = 1024;
/// Largest blob (compressed layer) accepted, so a descriptor cannot announce an absurd size.
pub const MAX_BLOB_BYTES: u64 = 64 << 30;
/// Largest `manifest.json` of a docker archive: a list of paths, like a manifest.
pub const MAX_DOCKER_MANIFEST_BYTES: u64 = 4 << 20;
/// Most images in one docker archive (`docker save a b c …`).
pub const MAX_ARCHIVE_IMAGES: usize = 1024;
/// Largest `oci-layout` marker file: it holds one short JSON object.
pub const MAX_OCI_LAYOUT_BYTES: u64 = 64 << 10;
/// Longest path or tag inside an image archive: PATH_MAX.
pub const MAX_PATH_BYTES: usize = 4096;

/// Parses `bytes` as JSON of type `T`; the error names `what` and serde's reason.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("malformed {what}: {e}")))
}

/// Encodes a document (manifest, index, config …) as compact JSON.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Invalid(format!("encoding JSON: {e}")))
}

/// Fails unless `bytes` is at most `max` long; checked before parsing anything.
pub fn check_len(bytes: &[u8], max: u64, what: &str) -> Result<()> {
    if bytes.len() as u64 > max {
        return Err(Error::Invalid(format!(
            "{what} is {} bytes; at most {max} are accepted",
            bytes.len()
        )));
    }
    Ok(())
}

/// Parses and validates an image manifest.
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<ImageManifest> {
    check_len(bytes, MAX_MANIFEST_BYTES, what)?;
    let m: ImageManifest = parse_json(bytes, what)?;
    m.validate().map_err(|e| context(e, what))?;
    Ok(m)
}

/// Parses and validates an image index.
pub fn parse_index(bytes: &[u8], what: &str) -> Result<ImageIndex> {
    check_len(bytes, MAX_MANIFEST_BYTES, what)?;
    let i: ImageIndex = parse_json(bytes, what)?;
    i.validate().map_err(|e| context(e, what))?;
    Ok(i)
}

/// Parses and validates an image config.
pub fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfig> {
    check_len(bytes, MAX_CONFIG_BYTES, what)?;
    let c: ImageConfig = parse_json(bytes, what)?;
    c.validate().map_err(|e| context(e, what))?;
    Ok(c)
}

/// Parses and validates the `manifest.json` of a `docker save` archive.
pub fn parse_docker_manifest(bytes: &[u8], what: &str) -> Result<Vec<DockerArchiveImage>> {
    check_len(bytes, MAX_DOCKER_MANIFEST_BYTES, what)?;
    let images: Vec<DockerArchiveImage> = parse_json(bytes, what)?;
    validate_docker_manifest(&images).map_err(|e| context(e, what))?;
    Ok(images)
}

/// Checks that a manifest and its config describe the same layers.
pub fn validate_image(manifest: &ImageManifest, config: &ImageConfig) -> Result<()> {
    if manifest.layers.len() != config.rootfs.diff_ids.len() {
        return Err(Error::Invalid(format!(
            "manifest lists {} layers but config {} lists {} diff_ids",
            manifest.layers.len(),
            manifest.config.digest,
            config.rootfs.diff_ids.len()
        )));
    }
    Ok(())
}

/// Prefixes a validation error with the document it is about.
fn context(e: Error, what: &str) -> Error {
    match e {
        Error::Invalid(msg) => Error::Invalid(format!("{what}: {msg}")),
        Error::UnsupportedMediaType {
            what: inner,
            media_type,
        } => Error::UnsupportedMediaType {
            what: format!("{inner} in {what}"),
            media_type,
        },
        other => other,
    }
}

/// Deserializes `null` as the type's default: docker writes `"Env": null` and the like.
pub(crate) fn null_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests;
