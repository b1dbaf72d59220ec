//! Import from a legacy `docker save` archive: `manifest.json` lists each image's config and
//! layer tars by path, so layer digests are computed while the layers are stored.

use std::io::Read;

use super::source::Source;
use super::{Imported, bar, verify_diff_id};
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::spec::{
    Compression, Descriptor, DockerArchiveImage, ImageManifest, MAX_CONFIG_BYTES,
    MAX_DOCKER_MANIFEST_BYTES, OCI_CONFIG, OCI_MANIFEST, parse_config, parse_docker_manifest,
    to_json, truncate,
};
use crate::store::Store;

/// Imports the image of the archive in `source` tagged `wanted` (or the only one).
pub(super) fn import(
    store: &Store,
    source: &Source,
    wanted: Option<&str>,
    progress: bool,
) -> Result<Imported> {
    let src = source.describe();
    let what = format!("manifest.json of {src}");
    let images = parse_docker_manifest(
        &source.read_capped("manifest.json", MAX_DOCKER_MANIFEST_BYTES, &what)?,
        &what,
    )?;
    let image = choose(&images, wanted, &src)?;

    let what = format!("config {} of {src}", truncate(&image.config));
    let config_bytes = source.read_capped(&image.config, MAX_CONFIG_BYTES, &what)?;
    let config = parse_config(&config_bytes, &what)?;
    let count = image.layers.len();
    if config.rootfs.diff_ids.len() != count {
        return Err(Error::Invalid(format!(
            "{src}: manifest.json lists {count} layers but the config lists {} diff_ids",
            config.rootfs.diff_ids.len()
        )));
    }
    // Fail on a missing layer before spending time copying the others.
    for (i, path) in image.layers.iter().enumerate() {
        source.check_path(path)?;
        if !source.exists(path) {
            return Err(Error::Invalid(format!(
                "layer {}/{count} ({}) of {src} is missing",
                i + 1,
                truncate(path)
            )));
        }
    }

    let mut layers = Vec::with_capacity(count);
    for (i, (path, diff_id)) in image.layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
        let what = format!("layer {}/{count} ({}) of {src}", i + 1, truncate(path));
        let (reader, size) = source.open_file(path)?;
        let (head, reader) = peek(reader, &what)?;
        let compression = Compression::sniff(&head);
        let reader = (&head[..]).chain(reader);
        let bar = bar(progress, &what, size);
        let stored = if compression == Compression::None {
            // A plain tar's blob digest is its diff_id: verify while storing.
            store
                .put_blob(reader, diff_id, Some(size), &what, &bar)
                .map(|n| (diff_id.clone(), n))
        } else {
            store.put_blob_computing(reader, diff_id.algorithm(), &what, &bar)
        };
        bar.finish();
        let (digest, size) = stored?;
        if compression != Compression::None {
            verify_diff_id(store, &digest, compression, diff_id, &what)?;
        }
        layers.push(Descriptor::new(compression.oci_media_type(), digest, size));
    }

    let config_digest = Digest::of(Algorithm::Sha256, &config_bytes);
    let hidden = Progress::hidden();
    let config_size = config_bytes.len() as u64;
    store.put_blob(
        &config_bytes[..],
        &config_digest,
        Some(config_size),
        &format!("config of {src}"),
        &hidden,
    )?;
    // The archive has no manifest; write the OCI manifest that describes what was stored.
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: Descriptor::new(OCI_CONFIG, config_digest, config_size),
        layers,
        annotations: Default::default(),
    };
    manifest.validate()?;
    let manifest_bytes = to_json(&manifest)?;
    let manifest_digest = Digest::of(Algorithm::Sha256, &manifest_bytes);
    let manifest_size = store.put_blob(
        &manifest_bytes[..],
        &manifest_digest,
        Some(manifest_bytes.len() as u64),
        &format!("manifest of {src}"),
        &hidden,
    )?;
    Ok(Imported {
        manifest_digest,
        manifest_size,
        manifest,
        config,
        names: image.repo_tags.clone(),
    })
}

/// The image tagged `wanted` if there is one, else the only image.
fn choose<'a>(
    images: &'a [DockerArchiveImage],
    wanted: Option<&str>,
    src: &str,
) -> Result<&'a DockerArchiveImage> {
    if let Some(w) = wanted {
        if let Some(i) = images.iter().find(|i| i.repo_tags.iter().any(|t| t == w)) {
            return Ok(i);
        }
    }
    match images {
        [only] => Ok(only),
        _ => {
            let tags: Vec<String> = images
                .iter()
                .take(20)
                .map(|i| match i.repo_tags.first() {
                    Some(t) => truncate(t),
                    None => format!("(untagged) {}", truncate(&i.config)),
                })
                .collect();
            Err(Error::Invalid(format!(
                "{src} holds {} images ({}); import one by passing its tag as the name",
                images.len(),
                tags.join(", ")
            )))
        }
    }
}

/// Reads up to the first 4 bytes (enough for the gzip and zstd magic numbers).
fn peek<R: Read>(mut reader: R, what: &str) -> Result<(Vec<u8>, R)> {
    let mut head = vec![0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match reader.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Invalid(format!("reading {what}: {e}"))),
        }
    }
    head.truncate(n);
    Ok((head, reader))
}
