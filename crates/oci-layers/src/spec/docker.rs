//! The `manifest.json` of a `docker save` archive.

use serde::{Deserialize, Serialize};

use super::{MAX_ARCHIVE_IMAGES, MAX_LAYERS, MAX_PATH_BYTES, null_default};
use crate::error::{Error, Result};

/// One image of a `docker save` archive's `manifest.json` (which is a list of these).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerArchiveImage {
    /// Path of the image config inside the archive.
    pub config: String,
    /// The names the image was saved under (`name:tag`).
    #[serde(default, deserialize_with = "null_default")]
    pub repo_tags: Vec<String>,
    /// Paths of the layer tars inside the archive, base first.
    #[serde(default, deserialize_with = "null_default")]
    pub layers: Vec<String>,
}

/// Checks counts and path lengths of a parsed `manifest.json`.
pub fn validate_docker_manifest(images: &[DockerArchiveImage]) -> Result<()> {
    if images.is_empty() {
        return Err(Error::Invalid(
            "docker archive manifest.json lists no images".to_string(),
        ));
    }
    if images.len() > MAX_ARCHIVE_IMAGES {
        return Err(Error::Invalid(format!(
            "docker archive manifest.json lists {} images; at most {MAX_ARCHIVE_IMAGES} are supported",
            images.len()
        )));
    }
    for image in images {
        if image.layers.len() > MAX_LAYERS {
            return Err(Error::Invalid(format!(
                "docker archive image has {} layers; at most {MAX_LAYERS} are supported",
                image.layers.len()
            )));
        }
        let paths = std::iter::once(&image.config).chain(&image.layers);
        for path in paths.chain(&image.repo_tags) {
            if path.is_empty() || path.len() > MAX_PATH_BYTES {
                return Err(Error::Invalid(format!(
                    "docker archive manifest.json has an empty or overlong path or tag ({} bytes)",
                    path.len()
                )));
            }
        }
    }
    Ok(())
}
