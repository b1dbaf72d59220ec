//! Resolving a reference to one image manifest: fetch by tag or digest, verify the digest,
//! walk an index (or manifest list) to the platform's entry, refuse schema 1.

use oci_layers::spec::{
    self, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, ImageManifest, MAX_MANIFEST_BYTES, OCI_INDEX,
    OCI_MANIFEST, Platform,
};
use oci_layers::{Digest, Error as StoreError};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};

use crate::client::{Client, Endpoint, error_entries, read_capped, status_error};
use crate::error::{Error, Result};
use crate::reference::Reference;

/// Indexes followed before a manifest must appear: an index may name another index once
/// (nested platforms); deeper chains are a loop or an attack.
const MAX_INDEX_DEPTH: usize = 2;
/// Schema 1 media types, refused.
const SCHEMA1_TYPES: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// One image manifest, resolved for a platform.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its bytes, exactly as served (they hash to `digest`).
    pub bytes: Vec<u8>,
    /// Parsed and validated.
    pub manifest: ImageManifest,
    /// The index it was picked from, if any: its digest.
    pub index: Option<Digest>,
}

/// What a fetched document turned out to be.
enum Document {
    Index(spec::ImageIndex),
    Manifest(ImageManifest),
}

/// Resolves `reference` on `ep` to the manifest for `platform`.
pub(crate) async fn resolve(
    client: &Client,
    ep: &Endpoint,
    reference: &Reference,
    platform: &Platform,
) -> Result<Resolved> {
    let repo = reference.repository();
    let mut want = reference.manifest_reference();
    let mut pinned = reference.digest().cloned();
    let mut index_digest = None;
    for _ in 0..=MAX_INDEX_DEPTH {
        let (bytes, media_type) = fetch(client, ep, reference, &want).await?;
        let digest = match &pinned {
            Some(d) => {
                let actual = Digest::of(d.algorithm(), &bytes);
                if actual != *d {
                    return Err(StoreError::DigestMismatch {
                        what: format!("manifest {want} of {reference}"),
                        expected: d.to_string(),
                        actual: actual.to_string(),
                    }
                    .into());
                }
                actual
            }
            None => Digest::of(oci_layers::Algorithm::Sha256, &bytes),
        };
        let what = format!("manifest {want} of {}/{repo}", reference.registry());
        match classify(&bytes, media_type.as_deref(), &what, reference)? {
            Document::Manifest(manifest) => {
                return Ok(Resolved {
                    digest,
                    bytes,
                    manifest,
                    index: index_digest,
                });
            }
            Document::Index(index) => {
                let entry = index.select(platform).map_err(|e| match e {
                    StoreError::Invalid(msg) => {
                        Error::Invalid(format!("{reference}: {msg}; pick one with --platform"))
                    }
                    other => other.into(),
                })?;
                index_digest.get_or_insert(digest);
                want = entry.digest.to_string();
                pinned = Some(entry.digest.clone());
            }
        }
    }
    Err(Error::Invalid(format!(
        "{reference}: indexes nest deeper than {MAX_INDEX_DEPTH} levels"
    )))
}

/// GETs one manifest or index; its bytes and media type.
async fn fetch(
    client: &Client,
    ep: &Endpoint,
    reference: &Reference,
    want: &str,
) -> Result<(Vec<u8>, Option<String>)> {
    let repo = reference.repository();
    let mut headers = HeaderMap::new();
    let accept = [
        OCI_INDEX,
        OCI_MANIFEST,
        DOCKER_MANIFEST_LIST,
        DOCKER_MANIFEST,
    ]
    .join(", ");
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert(header::ACCEPT, v);
    }
    let what = format!("fetching manifest {want} of {reference}");
    let resp = client
        .get(ep, repo, &format!("manifests/{want}"), headers, &what)
        .await?;
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => {
            let entries = error_entries(resp).await;
            // distribution says MANIFEST_UNKNOWN for a missing repository too: its tag list
            // tells the two apart.
            let name_unknown = entries.iter().any(|e| e.code == "NAME_UNKNOWN")
                || repository_unknown(client, ep, repo).await;
            return Err(if name_unknown {
                Error::NameUnknown {
                    repository: repo.to_string(),
                    registry: reference.registry().to_string(),
                }
            } else {
                Error::ManifestUnknown {
                    what: if want.contains(':') {
                        "manifest"
                    } else {
                        "tag"
                    },
                    reference: want.to_string(),
                    repository: repo.to_string(),
                    registry: reference.registry().to_string(),
                }
            });
        }
        StatusCode::FORBIDDEN => {
            return Err(Error::Unauthorized {
                repository: repo.to_string(),
                registry: reference.registry().to_string(),
            });
        }
        s => return Err(status_error(&what, ep, s, resp).await),
    }
    let media_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
    let bytes = read_capped(
        resp,
        MAX_MANIFEST_BYTES,
        &format!("manifest {want} of {reference}"),
    )
    .await?;
    Ok((bytes, media_type))
}

/// Whether `ep` says it has no repository `repo` (its tag list is NAME_UNKNOWN).
async fn repository_unknown(client: &Client, ep: &Endpoint, repo: &str) -> bool {
    let what = format!("listing the tags of {repo}");
    match client
        .get(ep, repo, "tags/list?n=1", HeaderMap::new(), &what)
        .await
    {
        Ok(resp) if resp.status() == StatusCode::NOT_FOUND => error_entries(resp)
            .await
            .iter()
            .any(|e| e.code == "NAME_UNKNOWN"),
        _ => false,
    }
}

/// Decides from the media type (header, else the document's own, else its shape) what a
/// document is, and parses it.
fn classify(
    bytes: &[u8],
    header_type: Option<&str>,
    what: &str,
    reference: &Reference,
) -> Result<Document> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Peek {
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let peek: Peek = spec::parse_json(bytes, what)?;
    let schema1 = peek.schema_version == Some(1)
        || header_type.is_some_and(|t| SCHEMA1_TYPES.contains(&t))
        || peek
            .media_type
            .as_deref()
            .is_some_and(|t| SCHEMA1_TYPES.contains(&t));
    if schema1 {
        return Err(Error::Schema1 {
            reference: reference.to_string(),
        });
    }
    // A generic header (application/json, octet-stream) says nothing; the document decides.
    let kind = [peek.media_type.as_deref(), header_type]
        .into_iter()
        .flatten()
        .find(|t| spec::is_index(t) || spec::is_manifest(t));
    let is_index = match kind {
        Some(t) => spec::is_index(t),
        None => peek.manifests.is_some(),
    };
    if is_index {
        Ok(Document::Index(spec::parse_index(bytes, what)?))
    } else {
        Ok(Document::Manifest(spec::parse_manifest(bytes, what)?))
    }
}
