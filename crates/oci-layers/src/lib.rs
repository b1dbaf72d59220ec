//! OCI images on disk: a digest-verified content store, image import (OCI layouts and
//! `docker save` archives), a per-layer extraction cache and rootfs assembly.
//!
//! Everything read from an image is untrusted: sizes are capped, digests are verified while
//! bytes are written, and extraction never creates or writes anything outside its directory.

pub mod digest;
pub mod error;
pub mod lock;
pub mod progress;
pub mod spec;

pub use digest::{Algorithm, Digest};
pub use error::{Error, Result};
pub use progress::Progress;
pub use spec::Compression;
