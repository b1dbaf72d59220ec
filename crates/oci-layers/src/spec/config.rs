//! The image config: how to run the image, and the diff_ids of its layers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::media::truncate;
use super::{MAX_LAYERS, null_default};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// An image config (OCI `application/vnd.oci.image.config.v1+json` or its docker equivalent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// When the image was created (RFC 3339), if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who created the image, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture in GOARCH terms.
    #[serde(default)]
    pub architecture: String,
    /// Operating system in GOOS terms.
    #[serde(default)]
    pub os: String,
    /// CPU variant, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// How to run a container of this image.
    #[serde(default, deserialize_with = "null_default")]
    pub config: RunConfig,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
    /// How each layer came about.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
}

/// The execution parameters of an image (`config` in the image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `NAME=value` environment entries.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    /// Default arguments (to the entrypoint, or the command when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// The program and leading arguments every command runs through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The working directory of the process.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    /// `user`, `uid`, `user:group` or `uid:gid` to run as.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub user: String,
    /// Ports the image says it listens on (`"80/tcp": {}`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    /// Free-form labels.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// The signal that stops the main process (`SIGTERM` …).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
}

/// The `rootfs` section: the uncompressed digest of each layer, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// sha256 (or sha512) of each layer's uncompressed tar, base first.
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<Digest>,
}

/// One step of the image's build history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// When the step ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command that made the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Who made the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// A free-form comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Whether the step made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Checks what the rest of the crate relies on: a linux image with a `layers` rootfs of
    /// a bounded number of diff_ids.
    pub fn validate(&self) -> Result<()> {
        if self.os != "linux" {
            return Err(Error::Invalid(format!(
                "image config is for OS {:?}; only linux images are supported",
                truncate(&self.os)
            )));
        }
        if self.rootfs.kind != "layers" {
            return Err(Error::Invalid(format!(
                "image config has rootfs type {:?}; expected \"layers\"",
                truncate(&self.rootfs.kind)
            )));
        }
        if self.rootfs.diff_ids.len() > MAX_LAYERS {
            return Err(Error::Invalid(format!(
                "image config lists {} diff_ids; at most {MAX_LAYERS} layers are supported",
                self.rootfs.diff_ids.len()
            )));
        }
        Ok(())
    }
}
