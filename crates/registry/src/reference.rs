//! Image references as docker reads them: `alpine` is `docker.io/library/alpine:latest`.

use std::fmt;
use std::str::FromStr;

use oci_layers::Digest;

use crate::error::{Error, Result};

/// Longest reference accepted: docker's limit for a whole name.
pub const MAX_REFERENCE_BYTES: usize = 255;
/// Longest tag: the distribution spec's `[\w][\w.-]{0,127}`.
const MAX_TAG_BYTES: usize = 128;
/// The registry a reference without one names.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API lives.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference: registry, repository, and a tag and/or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses `input` the way docker does (see the module docs).
    pub fn parse(input: &str) -> Result<Reference> {
        let bad = |reason: &str| Error::InvalidReference {
            input: shorten(input),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(bad("it is empty"));
        }
        if input.len() > MAX_REFERENCE_BYTES {
            return Err(bad("it is longer than 255 bytes"));
        }
        let (name, digest) = match input.split_once('@') {
            Some((name, d)) => {
                let digest: Digest = d
                    .parse()
                    .map_err(|_| bad("the part after @ is not a digest (sha256:<64 hex>)"))?;
                (name, Some(digest))
            }
            None => (input, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name[..at], Some(&name[at + 1..]))
            }
            None => (name, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(&bad)?;
        }
        let (registry, rest) = match name.split_once('/') {
            Some((first, rest)) if is_registry(first) => (first.to_string(), rest),
            _ => (DOCKER_HUB.to_string(), name),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        check_registry(&registry).map_err(&bad)?;
        let repository = if registry == DOCKER_HUB && !rest.contains('/') {
            format!("library/{rest}")
        } else {
            rest.to_string()
        };
        check_repository(&repository).map_err(&bad)?;
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry as the user names it (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) whose API serves this registry.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// The repository within the registry (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest the reference pins, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when pinned, else the tag (`latest` if none).
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// This reference pinned to `digest` (keeping the tag, for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

/// The API host of `registry`: Docker Hub's lives elsewhere.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

impl fmt::Display for Reference {
    /// The full form: `docker.io/library/alpine:latest`, `reg/repo@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match (&self.tag, &self.digest) {
            (Some(t), _) => write!(f, ":{t}")?,
            (None, None) => write!(f, ":latest")?,
            (None, Some(_)) => {}
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

/// Whether the first component names a registry rather than a repository: docker's rule.
fn is_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn check_registry(host: &str) -> Result<(), &'static str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
    if host.is_empty() || !host.chars().all(ok) {
        return Err("the registry must be a host name or address, with an optional :port");
    }
    if let Some((_, port)) = host.rsplit_once(':').filter(|_| !host.ends_with(']')) {
        if port.parse::<u16>().is_err() {
            return Err("the registry's port is not a number from 0 to 65535");
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), &'static str> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    let first_ok = chars.next().is_some_and(word);
    if !first_ok || tag.len() > MAX_TAG_BYTES || !chars.all(|c| word(c) || c == '.' || c == '-') {
        return Err("a tag is 1 to 128 letters, digits, _ . or -, not starting with . or -");
    }
    Ok(())
}

fn check_repository(repo: &str) -> Result<(), &'static str> {
    if repo.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository names must be lowercase");
    }
    for component in repo.split('/') {
        let bytes = component.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let ok = !bytes.is_empty()
            && bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes.iter().all(|b| alnum(b) || b"._-".contains(b))
            && !component.contains("..")
            && !component.contains("._")
            && !component.contains("_.");
        if !ok {
            return Err(
                "each part of a repository is lowercase letters and digits, separated by . _ __ or -",
            );
        }
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    s.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_names_expand() {
        for (input, full) in [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.19", "docker.io/library/alpine:3.19"),
            ("library/alpine", "docker.io/library/alpine:latest"),
            ("docker.io/alpine", "docker.io/library/alpine:latest"),
            (
                "index.docker.io/library/alpine",
                "docker.io/library/alpine:latest",
            ),
            ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
            ("ghcr.io/a/b/c:v1", "ghcr.io/a/b/c:v1"),
            ("localhost/x", "localhost/x:latest"),
            ("127.0.0.1:5000/x/y:t", "127.0.0.1:5000/x/y:t"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
        ] {
            assert_eq!(
                Reference::parse(input).unwrap().to_string(),
                full,
                "{input}"
            );
        }
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.manifest_reference(), "latest");
    }

    #[test]
    fn digests_and_pins() {
        let r = Reference::parse(&format!("alpine@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/alpine@{D}"));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.tag(), None);
        let r = Reference::parse(&format!("127.0.0.1:5000/x:3.19@{D}")).unwrap();
        assert_eq!(r.tag(), Some("3.19"));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/x:3.19@{D}"));
    }

    #[test]
    fn bad_references_say_why() {
        for (input, why) in [
            ("", "empty"),
            ("Alpine", "lowercase"),
            ("alpine:", "tag"),
            ("alpine:-x", "tag"),
            ("alpine@sha256:12", "digest"),
            ("a//b", "repository"),
            ("a/-b", "repository"),
            ("reg.io:99999/x", "port"),
            ("a b", "repository"),
            ("x/..", "repository"),
        ] {
            let err = Reference::parse(input).unwrap_err().to_string();
            assert!(err.contains(why), "{input:?}: {err}");
        }
        assert!(Reference::parse(&"a".repeat(256)).is_err());
    }
}
