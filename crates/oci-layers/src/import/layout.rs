//! Import from an OCI image layout: `oci-layout`, `index.json` and `blobs/<alg>/<hex>`.

use serde::Deserialize;

use super::source::Source;
use super::{Imported, copy_layer};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::spec::{
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Descriptor, ImageIndex, MAX_CONFIG_BYTES,
    MAX_DOCKER_MANIFEST_BYTES, MAX_MANIFEST_BYTES, MAX_OCI_LAYOUT_BYTES, Platform, is_index,
    is_manifest, parse_config, parse_docker_manifest, parse_index, parse_json, parse_manifest,
    truncate, validate_image,
};
use crate::store::Store;

/// The `oci-layout` marker file.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayout {
    image_layout_version: String,
}

/// Imports the image of the layout in `source` that `wanted` names (or the only one).
pub(super) fn import(
    store: &Store,
    source: &Source,
    wanted: Option<&str>,
    progress: bool,
) -> Result<Imported> {
    let src = source.describe();
    let what = format!("oci-layout file of {src}");
    let layout: OciLayout = parse_json(
        &source.read_capped("oci-layout", MAX_OCI_LAYOUT_BYTES, &what)?,
        &what,
    )?;
    if !layout.image_layout_version.starts_with("1.") {
        return Err(Error::Invalid(format!(
            "{src} is OCI image layout version {:?}; only 1.x is supported",
            truncate(&layout.image_layout_version)
        )));
    }
    let what = format!("index.json of {src}");
    let index = parse_index(
        &source.read_capped("index.json", MAX_MANIFEST_BYTES, &what)?,
        &what,
    )?;
    let entry = choose(&index, wanted, &src)?;
    let manifest_desc = if is_index(&entry.media_type) {
        let what = format!("image index {} of {src}", entry.digest);
        let nested = parse_index(&read_blob(source, entry, MAX_MANIFEST_BYTES, &what)?, &what)?;
        let chosen = nested
            .select(&Platform::host())
            .map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
        if !is_manifest(&chosen.media_type) {
            return Err(Error::Invalid(format!(
                "{what} points at another index ({}); only one level of nesting is supported",
                chosen.digest
            )));
        }
        chosen.clone()
    } else {
        entry.clone()
    };

    let what = format!("manifest {} of {src}", manifest_desc.digest);
    let manifest_bytes = read_blob(source, &manifest_desc, MAX_MANIFEST_BYTES, &what)?;
    let manifest = parse_manifest(&manifest_bytes, &what)?;
    let what = format!("config {} of {src}", manifest.config.digest);
    let config_bytes = read_blob(source, &manifest.config, MAX_CONFIG_BYTES, &what)?;
    let config = parse_config(&config_bytes, &what)?;
    validate_image(&manifest, &config).map_err(|e| Error::Invalid(format!("{src}: {e}")))?;
    let mut names = docker_repo_tags(source, &manifest.config.digest);
    names.extend(
        [ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME]
            .iter()
            .filter_map(|k| entry.annotation(k).map(str::to_string)),
    );

    let count = manifest.layers.len();
    // Fail on a missing layer before spending time copying the others.
    for (i, layer) in manifest.layers.iter().enumerate() {
        if !source.exists(&blob_rel(&layer.digest)) {
            return Err(Error::Invalid(format!(
                "layer {}/{count} ({}) of {src} is missing: no file {}",
                i + 1,
                layer.digest,
                blob_rel(&layer.digest)
            )));
        }
    }
    for (i, layer) in manifest.layers.iter().enumerate() {
        let what = format!("layer {}/{count} ({}) of {src}", i + 1, layer.digest);
        copy_layer(
            store,
            source,
            &blob_rel(&layer.digest),
            layer,
            &what,
            progress,
        )?;
    }
    let hidden = crate::progress::Progress::hidden();
    let what = format!("config of {src}");
    store.put_blob(
        &config_bytes[..],
        &manifest.config.digest,
        Some(manifest.config.size),
        &what,
        &hidden,
    )?;
    let what = format!("manifest of {src}");
    let manifest_size = store.put_blob(
        &manifest_bytes[..],
        &manifest_desc.digest,
        Some(manifest_desc.size),
        &what,
        &hidden,
    )?;
    Ok(Imported {
        manifest_digest: manifest_desc.digest,
        manifest_size,
        manifest,
        config,
        names,
    })
}

/// The index entry to import: among entries named `wanted` if any are, the one for this
/// platform; several differently named images without a choice is an error.
fn choose<'a>(index: &'a ImageIndex, wanted: Option<&str>, src: &str) -> Result<&'a Descriptor> {
    let name_of = |d: &Descriptor| {
        d.annotation(ANNOTATION_CONTAINERD_NAME)
            .or(d.annotation(ANNOTATION_REF_NAME))
            .unwrap_or("")
            .to_string()
    };
    let named: Vec<Descriptor> = match wanted {
        Some(w) => index
            .manifests
            .iter()
            .filter(|d| {
                d.annotation(ANNOTATION_REF_NAME) == Some(w)
                    || d.annotation(ANNOTATION_CONTAINERD_NAME) == Some(w)
            })
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let candidates = if named.is_empty() {
        index.manifests.clone()
    } else {
        named
    };
    let images: std::collections::BTreeSet<String> = candidates
        .iter()
        .filter(|d| is_manifest(&d.media_type) || is_index(&d.media_type))
        .map(name_of)
        .collect();
    if images.len() > 1 {
        let shown: Vec<String> = images.iter().take(20).map(|n| truncate(n)).collect();
        return Err(Error::Invalid(format!(
            "{src} holds several images ({}); import one by passing its name",
            shown.join(", ")
        )));
    }
    let narrowed = ImageIndex {
        schema_version: 2,
        media_type: None,
        manifests: candidates,
        annotations: Default::default(),
    };
    let chosen = narrowed
        .select(&Platform::host())
        .map_err(|e| Error::Invalid(format!("index.json of {src}: {e}")))?;
    index
        .manifests
        .iter()
        .find(|d| *d == chosen)
        .ok_or_else(|| Error::Invalid(format!("index.json of {src}: no image chosen")))
}

/// Tags of the image with config `config` in the `manifest.json` that newer `docker save`
/// archives carry beside the layout.
fn docker_repo_tags(source: &Source, config: &Digest) -> Vec<String> {
    if !source.exists("manifest.json") {
        return Vec::new();
    }
    source
        .read_capped("manifest.json", MAX_DOCKER_MANIFEST_BYTES, "manifest.json")
        .and_then(|b| parse_docker_manifest(&b, "manifest.json"))
        .map(|images| {
            images
                .into_iter()
                .filter(|i| i.config.trim_start_matches("./") == blob_rel(config))
                .flat_map(|i| i.repo_tags)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a small blob named by `desc` from the layout, verifying size and digest.
fn read_blob(source: &Source, desc: &Descriptor, cap: u64, what: &str) -> Result<Vec<u8>> {
    if desc.size > cap {
        return Err(Error::Invalid(format!(
            "{what} claims {} bytes; at most {cap} are accepted",
            desc.size
        )));
    }
    let rel = blob_rel(&desc.digest);
    if !source.exists(&rel) {
        return Err(Error::Invalid(format!("{what} is missing: no file {rel}")));
    }
    let bytes = source.read_capped(&rel, cap, what)?;
    if bytes.len() as u64 != desc.size {
        return Err(Error::Invalid(format!(
            "size mismatch for {what}: its descriptor says {} bytes, the blob has {}",
            desc.size,
            bytes.len()
        )));
    }
    let actual = Digest::of(desc.digest.algorithm(), &bytes);
    if actual != desc.digest {
        return Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: desc.digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(bytes)
}

/// The path of a blob inside a layout; safe because a parsed digest is `<alg>:<hex>`.
fn blob_rel(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}
