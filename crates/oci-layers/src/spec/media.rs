//! Media types of OCI and docker v2 images, and the compression a layer media type implies.

use crate::error::{Error, Result};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, uncompressed tar.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip-compressed tar.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd-compressed tar.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable layer, uncompressed tar.
pub const OCI_LAYER_ND_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// OCI non-distributable layer, gzip-compressed tar.
pub const OCI_LAYER_ND_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI non-distributable layer, zstd-compressed tar.
pub const OCI_LAYER_ND_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker v2 manifest list (the docker counterpart of an OCI index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer, gzip-compressed tar.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign (non-distributable) layer, gzip-compressed tar.
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker layer, uncompressed tar (used by containerd and `docker save`).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker layer, zstd-compressed tar (written by containerd-based docker).
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard (RFC 8878).
    Zstd,
}

impl Compression {
    /// The OCI layer media type for a tar stream compressed this way.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => OCI_LAYER_TAR,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        }
    }

    /// Guesses the compression of a blob from its first bytes (gzip and zstd magic numbers).
    ///
    /// Used only where a format names layers by path rather than media type (`docker save`).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The compression a layer media type implies; an error naming the type if it is not a layer.
pub fn layer_compression(media_type: &str) -> Result<Compression> {
    match media_type {
        OCI_LAYER_TAR | OCI_LAYER_ND_TAR | DOCKER_LAYER_TAR => Ok(Compression::None),
        OCI_LAYER_GZIP | OCI_LAYER_ND_GZIP | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN_GZIP => {
            Ok(Compression::Gzip)
        }
        OCI_LAYER_ZSTD | OCI_LAYER_ND_ZSTD | DOCKER_LAYER_ZSTD => Ok(Compression::Zstd),
        other => Err(Error::UnsupportedMediaType {
            what: "layer".into(),
            media_type: truncate(other),
        }),
    }
}

/// Whether `media_type` names an image manifest (OCI or docker v2).
pub fn is_manifest(media_type: &str) -> bool {
    matches!(media_type, OCI_MANIFEST | DOCKER_MANIFEST)
}

/// Whether `media_type` names an image index / manifest list.
pub fn is_index(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// Whether `media_type` names an image config (OCI or docker).
pub fn is_config(media_type: &str) -> bool {
    matches!(media_type, OCI_CONFIG | DOCKER_CONFIG)
}

/// Shortens an untrusted string for an error message, so hostile input cannot flood a terminal.
pub(crate) fn truncate(s: &str) -> String {
    /// Long enough for any real media type or image name, short enough for one terminal line.
    const MAX_SHOWN_CHARS: usize = 200;
    let mut out: String = s.chars().take(MAX_SHOWN_CHARS).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_type_maps_to_its_compression() {
        for (t, c) in [
            (OCI_LAYER_TAR, Compression::None),
            (OCI_LAYER_GZIP, Compression::Gzip),
            (OCI_LAYER_ZSTD, Compression::Zstd),
            (OCI_LAYER_ND_TAR, Compression::None),
            (OCI_LAYER_ND_GZIP, Compression::Gzip),
            (OCI_LAYER_ND_ZSTD, Compression::Zstd),
            (DOCKER_LAYER_GZIP, Compression::Gzip),
            (DOCKER_LAYER_FOREIGN_GZIP, Compression::Gzip),
            (DOCKER_LAYER_TAR, Compression::None),
        ] {
            assert_eq!(layer_compression(t).unwrap(), c, "{t}");
        }
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(layer_compression(c.oci_media_type()).unwrap(), c);
        }
    }

    #[test]
    fn unknown_layer_type_is_named() {
        let err = layer_compression("application/vnd.example.layer+bzip2").unwrap_err();
        assert!(
            err.to_string()
                .contains("application/vnd.example.layer+bzip2"),
            "{err}"
        );
        let err = layer_compression(OCI_CONFIG).unwrap_err();
        assert!(err.to_string().contains(OCI_CONFIG), "{err}");
    }

    #[test]
    fn sniffs_magic_numbers() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/\0\0\0"), Compression::None);
        assert_eq!(Compression::sniff(b""), Compression::None);
    }

    #[test]
    fn truncates_long_strings_on_char_boundaries() {
        let long = "é".repeat(500);
        let t = truncate(&long);
        assert_eq!(t.chars().count(), 201);
        assert_eq!(truncate("short"), "short");
    }
}
