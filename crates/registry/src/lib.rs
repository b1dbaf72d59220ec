//! A client of OCI distribution registries (Docker Hub, ghcr.io, distribution, Harbor …):
//! image references as docker reads them, credentials from docker's and podman's files,
//! anonymous, Basic and Bearer-token auth, and resumable, verified, parallel pulls into the
//! [`oci_layers`] store.
//!
//! Everything a registry sends is untrusted: documents are read up to named caps, blobs are
//! hashed while written and published only when their digest and size match.

pub mod blob;
pub mod challenge;
pub mod client;
pub mod credentials;
pub mod error;
pub mod manifest;
pub mod platform;
pub mod pull;
pub mod reference;

pub use client::{Client, ClientOptions, ProxyOptions, RetryPolicy};
pub use credentials::{Credential, CredentialFiles};
pub use error::{Error, Result};
pub use platform::parse_platform;
pub use pull::{DEFAULT_CONCURRENT_DOWNLOADS, ProgressFn, PullEvent, PullOptions, Pulled};
pub use reference::Reference;
