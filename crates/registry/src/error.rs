//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong talking to a registry or pulling from one.
///
/// Messages name the registry, repository or blob, and the fix where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A reference that is not `[registry/]repository[:tag][@digest]`.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// The reference as given (shortened if very long).
        input: String,
        /// Why it is not valid.
        reason: String,
    },
    /// A platform that is not `os/arch[/variant]`.
    #[error(
        "invalid platform {input:?}: {reason}; write it as os/arch[/variant], e.g. linux/arm64"
    )]
    InvalidPlatform {
        /// The platform as given.
        input: String,
        /// Why it is not valid.
        reason: String,
    },
    /// The registry refused the credentials (or wants some).
    #[error("unauthorized for {repository} on {registry}: run boxlite login {registry}")]
    Unauthorized {
        /// The repository asked for.
        repository: String,
        /// The registry, as the user names it.
        registry: String,
    },
    /// The repository exists but has no such tag or digest.
    #[error("no {what} {reference} in {repository} on {registry}")]
    ManifestUnknown {
        /// "tag" or "manifest".
        what: &'static str,
        /// The tag or digest.
        reference: String,
        /// The repository.
        repository: String,
        /// The registry.
        registry: String,
    },
    /// The registry has no such repository.
    #[error("no repository {repository} on {registry}")]
    NameUnknown {
        /// The repository.
        repository: String,
        /// The registry.
        registry: String,
    },
    /// A Docker schema 1 manifest, which carries no config and no layer digests to trust.
    #[error(
        "{reference} is a Docker schema 1 image, which is not supported (no registry has \
         served new ones since 2017): push it again with a current docker, or convert it \
         with `skopeo copy --format v2s2`"
    )]
    Schema1 {
        /// The reference pulled.
        reference: String,
    },
    /// A registry answer with a status this client cannot go on from.
    #[error("{what}: {registry} answered {status}{detail}")]
    Status {
        /// What was asked for.
        what: String,
        /// The registry (host) asked.
        registry: String,
        /// The HTTP status.
        status: u16,
        /// The registry's own error message, when it sent one (with a leading ": ").
        detail: String,
    },
    /// The registry could not be reached, or the connection broke, after retrying.
    #[error("{what}: {reason}")]
    Transport {
        /// What was asked for, with the URL.
        what: String,
        /// The underlying error and its causes.
        reason: String,
    },
    /// A document or body larger than this client accepts.
    #[error("{what} is larger than {limit} bytes, the most accepted")]
    TooLarge {
        /// What it was.
        what: String,
        /// The cap.
        limit: u64,
    },
    /// A document from the registry that is malformed or not what was asked for.
    #[error("{0}")]
    Invalid(String),
    /// A credentials file that cannot be read or written.
    #[error("{path}: {reason}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A credential helper (`docker-credential-NAME`) that failed.
    #[error("credential helper docker-credential-{helper}: {reason}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// What went wrong.
        reason: String,
    },
    /// An option of this client that cannot be used (a CA file, a proxy URL …).
    #[error("{0}")]
    InvalidOption(String),
    /// An image that is not in the store, whose pull failed (for callers that pull only what
    /// is missing).
    #[error("no image named {image} here, and pulling it failed: {source}")]
    NotHere {
        /// The image as named.
        image: String,
        /// Why the pull failed.
        source: Box<Error>,
    },
    /// Storing or extracting what was pulled.
    #[error(transparent)]
    Store(#[from] oci_layers::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error and its sources, joined: reqwest hides the interesting part in the chain.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
