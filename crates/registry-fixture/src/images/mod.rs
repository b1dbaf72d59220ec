//! Test images: real layer tarballs, config and manifest JSON, and a pusher
//! that uploads them over the registry HTTP API v2.

mod layer;
mod push;
mod spec;

pub use layer::{Compression, Entry, Layer};
pub use push::{Credentials, PushedImage, PushedIndex, Pusher};
pub use spec::{ImageSpec, MediaKind, Platform};

/// `sha256:<hex>` of `bytes`, the digest form registries use.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
