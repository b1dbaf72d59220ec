//! Image config and manifest JSON for OCI and Docker schema 2 media types.

use serde_json::{Value, json};

use super::layer::{Compression, Layer};

/// Which family of media types an image or index uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// `application/vnd.oci.image.*`.
    Oci,
    /// `application/vnd.docker.distribution.*` / `vnd.docker.container.*`.
    Docker,
}

impl MediaKind {
    /// Media type of an image manifest.
    pub fn manifest_type(self) -> &'static str {
        match self {
            MediaKind::Oci => "application/vnd.oci.image.manifest.v1+json",
            MediaKind::Docker => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }

    /// Media type of an image config.
    pub fn config_type(self) -> &'static str {
        match self {
            MediaKind::Oci => "application/vnd.oci.image.config.v1+json",
            MediaKind::Docker => "application/vnd.docker.container.image.v1+json",
        }
    }

    /// Media type of an index / manifest list.
    pub fn index_type(self) -> &'static str {
        match self {
            MediaKind::Oci => "application/vnd.oci.image.index.v1+json",
            MediaKind::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
        }
    }

    /// Media type of a layer with `compression`.
    pub fn layer_type(self, compression: Compression) -> &'static str {
        match (self, compression) {
            (MediaKind::Oci, Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (MediaKind::Oci, Compression::None) => "application/vnd.oci.image.layer.v1.tar",
            (MediaKind::Docker, Compression::Gzip) => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            (MediaKind::Docker, Compression::None) => {
                "application/vnd.docker.image.rootfs.diff.tar"
            }
        }
    }
}

/// An OS/architecture pair as indexes describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v8`, `v7`, ...
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Self {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(String::from),
        }
    }

    /// The `platform` object of an index entry.
    pub fn to_json(&self) -> Value {
        let mut p = json!({"architecture": self.architecture, "os": self.os});
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }
}

/// Everything needed to build and push one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `linux`.
    pub os: String,
    /// `v8` etc.
    pub variant: Option<String>,
    /// OCI or Docker media types.
    pub media: MediaKind,
    /// `config.Cmd`.
    pub cmd: Vec<String>,
    /// `config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `config.Env` (`KEY=value`).
    pub env: Vec<String>,
}

impl ImageSpec {
    /// linux/amd64, OCI, `Cmd ["/bin/sh"]`, a PATH env, with these layers.
    pub fn new(layers: Vec<Layer>) -> Self {
        Self {
            layers,
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
            media: MediaKind::Oci,
            cmd: vec!["/bin/sh".into()],
            entrypoint: Vec::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        }
    }

    /// This image's platform.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }

    /// The config blob (JSON), with `rootfs.diff_ids` from the layers.
    pub fn config_json(&self) -> Vec<u8> {
        let list = |v: &Vec<String>| if v.is_empty() { Value::Null } else { json!(v) };
        let mut config = json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": self.architecture,
            "os": self.os,
            "config": {
                "Cmd": list(&self.cmd),
                "Entrypoint": list(&self.entrypoint),
                "Env": self.env,
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| l.diff_id()).collect::<Vec<_>>(),
            },
            "history": self.layers.iter().map(|_| json!({
                "created": "2023-11-14T22:13:20Z",
                "created_by": "registry-fixture",
            })).collect::<Vec<_>>(),
        });
        if let Some(v) = &self.variant {
            config["variant"] = json!(v);
        }
        config.to_string().into_bytes()
    }

    /// The manifest JSON for a config blob of `config_digest`/`config_size`.
    pub fn manifest_json(&self, config_digest: &str, config_size: u64) -> Vec<u8> {
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| {
                json!({
                    "mediaType": self.media.layer_type(l.compression()),
                    "digest": l.digest(),
                    "size": l.size(),
                })
            })
            .collect();
        json!({
            "schemaVersion": 2,
            "mediaType": self.media.manifest_type(),
            "config": {
                "mediaType": self.media.config_type(),
                "digest": config_digest,
                "size": config_size,
            },
            "layers": layers,
        })
        .to_string()
        .into_bytes()
    }
}
