//! Extraction-based stacking, the fallback: layers extracted from their blobs next to the
//! destination, then each surviving entry renamed into place (no data is copied).

use std::fs::{File, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rayon::prelude::*;
use whiteout::{EntryKind, Stack};

use super::LayerBlob;
use crate::error::{Error, Result};
use crate::extract::{ExtractOptions, Extracted, extract_layer};

/// Assembles `layers` (bottom first) into the empty directory `dest` straight from the blobs,
/// each limited to `max_bytes` unpacked.
pub fn extract(layers: &[LayerBlob], dest: &Path, max_bytes: u64) -> Result<fastcopy::Report> {
    // Staging beside the destination keeps it on the same filesystem, so renames work.
    let parent = dest.parent().unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".boxlite-staging-")
        .tempdir_in(parent)
        .map_err(|e| Error::io("creating a staging directory in", parent, e))?;
    let result = stack(layers, staging.path(), dest, max_bytes);
    // The staging trees keep the layers' read-only directories, which the temporary
    // directory's own removal cannot get through without root; fastcopy's can.
    let removed = fastcopy::remove_tree(staging.path());
    let report = result?;
    removed.map_err(|e| Error::Invalid(format!("removing the staging directory: {e}")))?;
    Ok(report)
}

/// Extracts every layer into `staging/<index>` and moves the surviving entries into `dest`.
fn stack(
    layers: &[LayerBlob],
    staging: &Path,
    dest: &Path,
    max_bytes: u64,
) -> Result<fastcopy::Report> {
    let opts = ExtractOptions {
        max_bytes,
        ..ExtractOptions::default()
    };
    let extracted: Vec<Extracted> = layers
        .par_iter()
        .enumerate()
        .map(|(i, layer)| {
            let root = staging.join(i.to_string());
            std::fs::create_dir(&root).map_err(|e| Error::io("creating", &root, e))?;
            let blob = File::open(&layer.blob)
                .map_err(|e| Error::io("opening layer blob", &layer.blob, e))?;
            let out = extract_layer(blob, layer.compression, &root, &opts)
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
        let src = staging.join(provider.to_string()).join(path);
        let dst = dest.join(path);
        match kind {
            EntryKind::Dir => copier
                .copy_entry(&src, &dst)
                .map_err(|e| Error::Invalid(format!("creating {}: {e}", dst.display())))?,
            EntryKind::NonDir => {
                move_into_place(&src, &dst).map_err(|e| Error::io("moving into place", &dst, e))?;
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

/// Renames `src` to `dst`, first opening up `src`'s directory if it is read-only (a layer's
/// 0555 directory, as `/usr/lib` is on Fedora): without root, moving an entry out of it is
/// refused. Its mode is not needed any more: a directory's metadata is recorded when it is
/// copied, which happens before any of its children are moved, and staging goes away after.
fn move_into_place(src: &Path, dst: &Path) -> std::io::Result<()> {
    match std::fs::rename(src, dst) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let Some(dir) = src.parent() else {
                return Err(e);
            };
            let mode = std::fs::symlink_metadata(dir)?.permissions().mode();
            std::fs::set_permissions(dir, Permissions::from_mode(mode | 0o300))?;
            std::fs::rename(src, dst)
        }
        other => other,
    }
}
