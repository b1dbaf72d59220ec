//! Extraction-based stacking, the fallback: layers extracted from their blobs next to the
//! destination, then each surviving entry renamed into place (no data is copied).

use std::fs::File;
use std::path::Path;

use rayon::prelude::*;
use whiteout::{EntryKind, Stack};

use super::LayerBlob;
use crate::error::{Error, Result};
use crate::extract::{ExtractOptions, Extracted, extract_layer};

/// Assembles `layers` (bottom first) into the empty directory `dest` straight from the blobs.
pub fn extract(layers: &[LayerBlob], dest: &Path) -> Result<fastcopy::Report> {
    // Staging beside the destination keeps it on the same filesystem, so renames work.
    let parent = dest.parent().unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".boxlite-staging-")
        .tempdir_in(parent)
        .map_err(|e| Error::io("creating a staging directory in", parent, e))?;
    let extracted: Vec<Extracted> = layers
        .par_iter()
        .enumerate()
        .map(|(i, layer)| {
            let root = staging.path().join(i.to_string());
            std::fs::create_dir(&root).map_err(|e| Error::io("creating", &root, e))?;
            let blob = File::open(&layer.blob)
                .map_err(|e| Error::io("opening layer blob", &layer.blob, e))?;
            let out = extract_layer(blob, layer.compression, &root, &ExtractOptions::default())
                .map_err(|e| Error::Invalid(format!("{}: {e}", layer.what)))?;
            if out.diff_id != layer.diff_id {
                return Err(Error::DigestMismatch {
                    what: layer.what.clone(),
                    expected: layer.diff_id.to_string(),
                    actual: out.diff_id.to_string(),
                });
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;

    let mut stack = Stack::new();
    for (layer, out) in layers.iter().zip(&extracted) {
        stack
            .push(&out.entries)
            .map_err(|e| Error::Invalid(format!("{}: {e}", layer.what)))?;
    }
    let copier = fastcopy::Copier::new(fastcopy::Options::default());
    let mut report = fastcopy::Report::default();
    for (path, kind, provider) in stack.entries() {
        let src = staging.path().join(provider.to_string()).join(path);
        let dst = dest.join(path);
        match kind {
            EntryKind::Dir => copier
                .copy_entry(&src, &dst)
                .map_err(|e| Error::Invalid(format!("creating {}: {e}", dst.display())))?,
            EntryKind::NonDir => {
                std::fs::rename(&src, &dst).map_err(|e| Error::io("moving into place", &dst, e))?;
                report.files += 1;
            }
        }
    }
    let dirs = copier
        .finish()
        .map_err(|e| Error::Invalid(format!("finishing {}: {e}", dest.display())))?;
    report.merge(&dirs);
    Ok(report)
}
