//! Uploads blobs, manifests and indexes over the registry HTTP API v2 with
//! the fixture's own HTTP client, following Basic and Bearer challenges.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::layer::Layer;
use super::sha256_digest;
use super::spec::{ImageSpec, MediaKind, Platform};
use crate::http::{self, Response};
use crate::util::{base64, percent_encode};

/// Credentials the pusher presents when challenged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Anonymous.
    None,
    /// A user and password, sent as Basic to the registry or token realm.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl Credentials {
    /// Shorthand for [`Credentials::Basic`].
    pub fn basic(user: &str, password: &str) -> Self {
        Credentials::Basic {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The `Authorization: Basic ...` value, if any.
    fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::None => None,
            Credentials::Basic { user, password } => Some(format!(
                "Basic {}",
                base64(format!("{user}:{password}").as_bytes())
            )),
        }
    }
}

/// What [`Pusher::push_image`] uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// `sha256:` of the manifest bytes.
    pub manifest_digest: String,
    /// The manifest exactly as pushed.
    pub manifest_bytes: Vec<u8>,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// `sha256:` of the config blob.
    pub config_digest: String,
    /// The config blob exactly as pushed.
    pub config_bytes: Vec<u8>,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// The image's platform (from its spec).
    pub platform: Platform,
}

/// What [`Pusher::push_index`] uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedIndex {
    /// `sha256:` of the index bytes.
    pub digest: String,
    /// The index exactly as pushed.
    pub bytes: Vec<u8>,
    /// Its media type.
    pub media_type: String,
    /// The attestation manifest's digest, when one was added.
    pub attestation_digest: Option<String>,
}

/// A blocking registry uploader for plain-HTTP registries.
#[derive(Debug)]
pub struct Pusher {
    host: String,
    creds: Credentials,
    /// `Authorization` values that worked, by scope, reused until a 401.
    auth: Mutex<HashMap<String, String>>,
}

impl Pusher {
    /// A pusher for `host` (`127.0.0.1:PORT`) presenting `creds`.
    pub fn new(host: impl Into<String>, creds: Credentials) -> Self {
        Self {
            host: host.into(),
            creds,
            auth: Mutex::new(HashMap::new()),
        }
    }

    /// Whether blob `digest` exists in `repo`.
    pub fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool> {
        let r = self.request(
            repo,
            "HEAD",
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            b"",
        )?;
        Ok(r.status == 200)
    }

    /// Uploads `bytes` as a blob of `repo` (monolithic POST then PUT),
    /// skipping the upload if it exists; returns its `sha256:` digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> Result<String> {
        let digest = sha256_digest(bytes);
        if self.blob_exists(repo, &digest)? {
            return Ok(digest);
        }
        let start = self.request(
            repo,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        )?;
        if start.status != 202 {
            bail!("starting an upload to {repo}: {}", describe(&start));
        }
        let location = start
            .header("location")
            .context("upload without Location")?;
        let mut target = location_target(location)?;
        target.push(if target.contains('?') { '&' } else { '?' });
        target.push_str(&format!("digest={}", percent_encode(&digest)));
        let headers = [(
            "Content-Type".to_string(),
            "application/octet-stream".to_string(),
        )];
        let done = self.request(repo, "PUT", &target, &headers, bytes)?;
        if done.status != 201 {
            bail!(
                "finishing the upload of {digest} to {repo}: {}",
                describe(&done)
            );
        }
        Ok(digest)
    }

    /// PUTs a manifest (or index) under `reference` (tag or digest); returns
    /// its `sha256:` digest.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String> {
        let digest = sha256_digest(bytes);
        let headers = [("Content-Type".to_string(), media_type.to_string())];
        let target = format!("/v2/{repo}/manifests/{reference}");
        let r = self.request(repo, "PUT", &target, &headers, bytes)?;
        if r.status != 201 {
            bail!("pushing manifest {repo}:{reference}: {}", describe(&r));
        }
        if let Some(got) = r.header("docker-content-digest") {
            if got != digest {
                bail!("registry says manifest digest {got}, we computed {digest}");
            }
        }
        Ok(digest)
    }

    /// GETs a manifest with `accept` media types: status, Content-Type, body.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        accept: &[&str],
    ) -> Result<(u16, Option<String>, Vec<u8>)> {
        let headers = [("Accept".to_string(), accept.join(", "))];
        let target = format!("/v2/{repo}/manifests/{reference}");
        let r = self.request(repo, "GET", &target, &headers, b"")?;
        Ok((r.status, r.header("content-type").map(String::from), r.body))
    }

    /// Deletes a manifest by digest (the registry has deletes enabled).
    pub fn delete_manifest(&self, repo: &str, digest: &str) -> Result<()> {
        let r = self.request(
            repo,
            "DELETE",
            &format!("/v2/{repo}/manifests/{digest}"),
            &[],
            b"",
        )?;
        if r.status != 202 {
            bail!("deleting {repo}@{digest}: {}", describe(&r));
        }
        Ok(())
    }

    /// Pushes layers, config and manifest, tagging the manifest `tag`.
    pub fn push_image(&self, repo: &str, tag: &str, spec: &ImageSpec) -> Result<PushedImage> {
        for layer in &spec.layers {
            self.push_blob(repo, layer.bytes())?;
        }
        let config = spec.config_json();
        let config_digest = self.push_blob(repo, &config)?;
        let manifest = spec.manifest_json(&config_digest, config.len() as u64);
        let media_type = spec.media.manifest_type();
        let manifest_digest = self.push_manifest(repo, tag, media_type, &manifest)?;
        Ok(PushedImage {
            manifest_digest,
            manifest_bytes: manifest,
            manifest_media_type: media_type.to_string(),
            config_digest,
            config_bytes: config,
            layers: spec.layers.clone(),
            platform: spec.platform(),
        })
    }

    /// Pushes an index (OCI) or manifest list (Docker) over already pushed
    /// images, tagged `tag`. With `attestation`, also pushes a buildx-style
    /// attestation manifest for the first entry and lists it with platform
    /// `unknown/unknown` and `vnd.docker.reference.type: attestation-manifest`.
    pub fn push_index(
        &self,
        repo: &str,
        tag: &str,
        entries: &[(PushedImage, Platform)],
        media: MediaKind,
        attestation: bool,
    ) -> Result<PushedIndex> {
        let mut manifests: Vec<Value> = entries
            .iter()
            .map(|(img, platform)| {
                json!({
                    "mediaType": img.manifest_media_type,
                    "digest": img.manifest_digest,
                    "size": img.manifest_bytes.len(),
                    "platform": platform.to_json(),
                })
            })
            .collect();
        let mut attestation_digest = None;
        if attestation {
            let (first, _) = entries.first().context("an attestation needs an image")?;
            let (digest, size) = self.push_attestation(repo, first)?;
            manifests.push(json!({
                "mediaType": MediaKind::Oci.manifest_type(),
                "digest": digest,
                "size": size,
                "platform": {"architecture": "unknown", "os": "unknown"},
                "annotations": {
                    "vnd.docker.reference.digest": first.manifest_digest,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
            }));
            attestation_digest = Some(digest);
        }
        let media_type = media.index_type();
        let bytes = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": manifests,
        })
        .to_string()
        .into_bytes();
        let digest = self.push_manifest(repo, tag, media_type, &bytes)?;
        Ok(PushedIndex {
            digest,
            bytes,
            media_type: media_type.to_string(),
            attestation_digest,
        })
    }

    /// Pushes an in-toto attestation manifest about `subject` by digest, as
    /// buildx does; returns its digest and size.
    fn push_attestation(&self, repo: &str, subject: &PushedImage) -> Result<(String, usize)> {
        let hex = subject.manifest_digest.trim_start_matches("sha256:");
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://spdx.dev/Document",
            "subject": [{"name": "registry-fixture", "digest": {"sha256": hex}}],
            "predicate": {"spdxVersion": "SPDX-2.3"},
        })
        .to_string()
        .into_bytes();
        let statement_digest = self.push_blob(repo, &statement)?;
        let config = json!({
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [statement_digest]},
        })
        .to_string()
        .into_bytes();
        let config_digest = self.push_blob(repo, &config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MediaKind::Oci.manifest_type(),
            "config": {
                "mediaType": MediaKind::Oci.config_type(),
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.in-toto+json",
                "digest": statement_digest,
                "size": statement.len(),
                "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
            }],
        })
        .to_string()
        .into_bytes();
        let digest = sha256_digest(&manifest);
        self.push_manifest(repo, &digest, MediaKind::Oci.manifest_type(), &manifest)?;
        Ok((digest, manifest.len()))
    }

    /// Sends a request scoped to `repo`, answering up to two challenges.
    fn request(
        &self,
        repo: &str,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Response> {
        let scope = format!("repository:{repo}:pull,push");
        let mut attempt = 0;
        loop {
            let mut h = headers.to_vec();
            let cached = self.auth.lock().ok().and_then(|m| m.get(&scope).cloned());
            if let Some(a) = cached {
                h.push(("Authorization".into(), a));
            }
            let resp = http::send(&self.host, method, target, &h, body)
                .with_context(|| format!("{method} {target} on {}", self.host))?;
            attempt += 1;
            if resp.status != 401 || attempt > 2 {
                return Ok(resp);
            }
            let challenge = resp
                .header("www-authenticate")
                .context("401 without WWW-Authenticate")?;
            let value = self.answer_challenge(challenge, &scope)?;
            if let Ok(mut m) = self.auth.lock() {
                m.insert(scope.clone(), value);
            }
        }
    }

    /// The `Authorization` value that answers `challenge`.
    fn answer_challenge(&self, challenge: &str, scope: &str) -> Result<String> {
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            return self
                .creds
                .basic_header()
                .context("the registry wants Basic credentials and the pusher has none");
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            bail!("unsupported challenge {challenge}");
        }
        let realm = params
            .get("realm")
            .context("Bearer challenge without realm")?;
        let (host, mut target) = http::split_url(realm)?;
        target.push(if target.contains('?') { '&' } else { '?' });
        if let Some(service) = params.get("service") {
            target.push_str(&format!("service={}&", percent_encode(service)));
        }
        target.push_str(&format!("scope={}", percent_encode(scope)));
        let headers: Vec<(String, String)> = self
            .creds
            .basic_header()
            .map(|b| vec![("Authorization".to_string(), b)])
            .unwrap_or_default();
        let r = http::send(&host, "GET", &target, &headers, b"")?;
        if r.status != 200 {
            bail!("token request to {realm}: {}", describe(&r));
        }
        let v: Value = serde_json::from_slice(&r.body).context("token response is not JSON")?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(Value::as_str)
            .context("token response without token")?;
        Ok(format!("Bearer {token}"))
    }
}

/// The path and query of an upload `Location` (absolute or relative).
fn location_target(location: &str) -> Result<String> {
    if location.starts_with('/') {
        return Ok(location.to_string());
    }
    Ok(http::split_url(location)?.1)
}

/// Status and body of a failed response, for errors.
fn describe(r: &Response) -> String {
    format!(
        "HTTP {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body).trim()
    )
}

/// Splits `Bearer realm="..",service=".."` into the scheme and its
/// parameters (quoted values may contain commas, as scopes do).
fn parse_challenge(s: &str) -> (String, HashMap<String, String>) {
    let s = s.trim();
    let (scheme, rest) = s.split_once(' ').unwrap_or((s, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_bearer_challenge_with_commas() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="svc",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "http://127.0.0.1:1/token");
        assert_eq!(p["service"], "svc");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (scheme, p) = parse_challenge("Basic realm=x");
        assert_eq!((scheme.as_str(), p["realm"].as_str()), ("Basic", "x"));
    }
}
