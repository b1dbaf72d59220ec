//! Copy-based stacking: each surviving path copied once from the cached layer providing it.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use whiteout::{EntryKind, Stack};

use crate::cache::CachedLayer;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Copies the merged view of `layers` (bottom first) into the empty directory `dest`.
pub fn copy(layers: &[CachedLayer], dest: &Path, progress: bool) -> Result<fastcopy::Report> {
    let mut stack = Stack::new();
    for layer in layers {
        stack
            .push(&layer.entries)
            .map_err(|e| Error::Invalid(format!("layer {}: {e}", layer.diff_id)))?;
    }
    let copier = fastcopy::Copier::new(fastcopy::Options::default());
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (path, kind, provider) in stack.entries() {
        let src = layers[provider].root.join(path);
        let dst = dest.join(path);
        match kind {
            // Parents before children: the stack yields them in that order.
            EntryKind::Dir => copier.copy_entry(&src, &dst).map_err(copy_error)?,
            EntryKind::NonDir => files.push((src, dst)),
        }
    }
    let bar = if progress {
        Progress::items("copying", Some(files.len() as u64))
    } else {
        Progress::hidden()
    };
    files.par_iter().try_for_each(|(src, dst)| {
        bar.inc(1);
        copier.copy_entry(src, dst).map_err(copy_error)
    })?;
    bar.finish();
    copier.finish().map_err(copy_error)
}

fn copy_error(e: fastcopy::Error) -> Error {
    Error::Invalid(format!("copying from the layer cache: {e}"))
}
