//! OCI images on disk: a digest-verified content store, image import (OCI layouts and
//! `docker save` archives), a per-layer extraction cache and rootfs assembly.
//!
//! Everything read from an image is untrusted: sizes are capped, digests are verified while
//! bytes are written, and extraction never creates or writes anything outside its directory.

pub mod builder;
pub mod cache;
pub mod digest;
pub mod durability;
pub mod error;
pub mod extract;
pub mod image;
pub mod import;
pub mod lock;
pub mod partial;
pub mod progress;
pub mod rootfs;
pub mod spec;
pub mod store;

pub use builder::LayoutBuilder;
pub use cache::{CachedLayer, LayerCache};
pub use digest::{Algorithm, Digest};
pub use error::{Error, Result};
pub use extract::{ExtractOptions, Extracted, extract_layer, stream_layer};
pub use image::{GcReport, Image, ImageRecord, LayerRecord};
pub use partial::PartialBlob;
pub use progress::Progress;
pub use spec::Compression;
pub use store::Store;
