//! Merged mode: one image of a whole layer stack, the root filesystem a container sees.

use std::fs::File;
use std::io::Read;

use crate::archive::Reader;
use crate::error::{Error, Limit, Result};
use crate::options::{Options, Summary};
use crate::tree::Refusal;
use crate::{MAX_DIR_ENTRIES, MAX_LAYERS};

/// Writes one image of a stack of layers, added bottom first, as extracting them in order
/// with OCI's whiteout rules gives it (see the crate documentation).
///
/// File data goes to `out` as each layer is read; [`Merger::finish`] writes the metadata
/// and the superblock. Adding a layer consumes the merger and gives it back on success, so a
/// failed layer cannot be skipped by accident: the image is all-or-nothing.
///
/// ```no_run
/// let out = std::fs::File::create("/tmp/rootfs.erofs.tmp")?;
/// let mut merger = erofs::Merger::new(&out, &erofs::Options::default());
/// for blob in ["/tmp/layer0.tar", "/tmp/layer1.tar"] {
///     merger = merger.add_layer(std::fs::File::open(blob)?)?;
/// }
/// let summary = merger.finish()?;
/// std::fs::rename("/tmp/rootfs.erofs.tmp", "/tmp/rootfs.erofs")?;
/// eprintln!("{} layers, {} bytes dead", summary.layers, summary.dead_bytes);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Merger<'f> {
    reader: Reader<'f>,
    out: &'f File,
    options: Options,
    layers: usize,
}

impl<'f> Merger<'f> {
    /// A merger writing to `out`, a new, empty file (as for [`write_layer`](crate::write_layer)).
    pub fn new(out: &'f File, options: &Options) -> Merger<'f> {
        Merger {
            reader: Reader::new(out, options),
            out,
            options: options.clone(),
            layers: 0,
        }
    }

    /// Reads the next layer's uncompressed tar stream on top of those added so far.
    ///
    /// Errors name the layer ([`Error::Layer`], counting from 0 at the bottom), except
    /// going past [`MAX_LAYERS`]. The caps on entries, memory and data count all layers
    /// together.
    pub fn add_layer<R: Read>(mut self, tar: R) -> Result<Merger<'f>> {
        let index = self.layers;
        if index >= MAX_LAYERS {
            return Err(Error::limit(Limit::Layers, MAX_LAYERS));
        }
        let in_layer = |error: Error| Error::Layer {
            index,
            source: Box::new(error),
        };
        self.reader
            .tree
            .begin_layer()
            .map_err(refused)
            .map_err(in_layer)?;
        self.reader.read(tar).map_err(in_layer)?;
        self.reader
            .tree
            .merge_layer()
            .map_err(refused)
            .map_err(in_layer)?;
        self.layers += 1;
        Ok(self)
    }

    /// Layers added so far.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Writes the image's metadata and superblock, and truncates `out` to the image's size.
    /// Nothing is fsynced. With no layer added, the image holds only an empty root.
    pub fn finish(self) -> Result<Summary> {
        self.reader.finish(self.out, &self.options)
    }
}

/// Writes one image of `layers` (uncompressed tar streams, bottom first) to `out`, with a
/// [`Merger`].
pub fn write_merged<R: Read>(
    layers: impl IntoIterator<Item = R>,
    out: &File,
    options: &Options,
) -> Result<Summary> {
    let mut merger = Merger::new(out, options);
    for layer in layers {
        merger = merger.add_layer(layer)?;
    }
    merger.finish()
}

fn refused(r: Refusal) -> Error {
    match r {
        Refusal::Limit(limit, max) => Error::limit(limit, max),
        // Merging only walks directories; reported as a cap rather than a panic.
        Refusal::NotDir { .. } => Error::limit(Limit::DirEntries, MAX_DIR_ENTRIES),
    }
}
