//! An image's root filesystem as one EROFS image, written straight from its layers' tar streams
//! (crate `erofs`, merged mode): each layer's blob is decompressed on a thread of its own, its
//! diff_id checked, and its entries applied over the layers below with OCI whiteout semantics,
//! file data streamed into the image as it arrives. No host inode is made per image file and
//! the data is written once (an extracted layer cache, a rootfs tree and `mkfs.ext4 -d` wrote
//! it three times).

use std::fs::File;
use std::path::Path;

use oci_layers::spec::layer_compression;
use oci_layers::{Image, Progress, Store};

use crate::error::{Error, Result};

/// What writing the image did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The image's size in bytes.
    pub bytes: u64,
    /// File data bytes of entries a higher layer replaced or whited out (in the image, never
    /// reachable).
    pub dead_bytes: u64,
}

/// Writes the merged root filesystem of `image` into `out` (truncated to the image's size).
/// `max_layer_bytes` caps each layer's decompressed size, as extraction does.
pub fn write_rootfs(
    store: &Store,
    image: &Image,
    out: &File,
    out_path: &Path,
    max_layer_bytes: u64,
    progress: bool,
) -> Result<Written> {
    let layers = &image.manifest.layers;
    let diff_ids = &image.config.rootfs.diff_ids;
    if layers.len() != diff_ids.len() {
        return Err(Error::InvalidInput(format!(
            "image {}: its manifest lists {} layers but its config {} diff_ids",
            image.record.name,
            layers.len(),
            diff_ids.len()
        )));
    }
    let bar = if progress {
        Progress::bytes("rootfs", Some(layers.iter().map(|l| l.size).sum::<u64>()))
    } else {
        Progress::hidden()
    };
    let mut options = erofs::Options::default();
    options.max_data_bytes = max_layer_bytes.saturating_mul(layers.len().max(1) as u64);
    let mut merger = erofs::Merger::new(out, &options);
    for (i, (layer, diff_id)) in layers.iter().zip(diff_ids).enumerate() {
        let what = format!("layer {} of {} ({})", i + 1, layers.len(), layer.digest);
        let compression = layer_compression(&layer.media_type)?;
        let blob = Counted {
            inner: store.open_blob(&layer.digest)?,
            bar: bar.clone(),
        };
        merger =
            oci_layers::stream_layer(blob, compression, diff_id, max_layer_bytes, &what, |tar| {
                merger.add_layer(tar)
            })?
            .map_err(|e| {
                erofs_error(e, &format!("image {}: {what}", image.record.name), out_path)
            })?;
    }
    let summary = merger
        .finish()
        .map_err(|e| erofs_error(e, &format!("image {}", image.record.name), out_path))?;
    bar.finish();
    Ok(Written {
        bytes: summary.image_bytes,
        dead_bytes: summary.dead_bytes,
    })
}

/// The runtime's error for the writer's: the image's fault (a bad or oversized layer), or the
/// host's (writing `path` failed).
fn erofs_error(e: erofs::Error, what: &str, path: &Path) -> Error {
    match e.kind() {
        erofs::ErrorKind::Io => Error::io(
            "writing",
            path,
            std::io::Error::other(format!("{what}: {e}")),
        ),
        _ => Error::Image(oci_layers::Error::Invalid(format!("{what}: {e}"))),
    }
}

/// A blob reader that moves the progress bar by the compressed bytes read.
struct Counted {
    inner: File,
    bar: Progress,
}

impl std::io::Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
