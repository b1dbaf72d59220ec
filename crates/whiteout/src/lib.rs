//! OCI image-spec whiteout and opaque-directory semantics, as pure data (no I/O).
//!
//! An image is a stack of layers, bottom (index 0) first. Each layer is a list of
//! [`LayerEntry`]s: relative paths with a kind ([`EntryKind::Dir`] or
//! [`EntryKind::NonDir`]). Two kinds of entries are *markers* and never reach the
//! result ([`parse_marker`]):
//!
//! - `.wh.NAME` removes `NAME` (with its subtree) from the layers **below**;
//! - `.wh..wh..opq` in directory `D` removes every child of `D` from the layers below
//!   but keeps `D`.
//!
//! A marker never hides an entry of its own layer, and a later layer can re-create
//! what an earlier one removed. When an entry meets what the lower layers left at its
//! path, a directory merges with a directory and everything else replaces ([`resolve`]).
//! A parent directory a layer does not list is *implied*: it keeps a lower directory's
//! provider, and otherwise becomes a directory of that layer.
//!
//! [`LayerPlan`] says what one layer does to the layers below it; [`Stack`] applies
//! layers in order and says, for each surviving path, which layer provides it.
//! Malformed layers (invalid markers, paths that are not normalised, entries beneath a
//! non-directory of the same layer) are rejected with an [`Error`] naming the entry.
//! Names are compared as raw bytes, so the crate is Unix-only.

mod entry;
mod error;
mod key;
mod marker;
mod merge;
mod plan;
mod stack;

pub use entry::{EntryKind, LayerEntry, MAX_PATH_BYTES};
pub use error::Error;
pub use marker::{Marker, OPAQUE_MARKER, WHITEOUT_PREFIX, parse_marker};
pub use merge::{Merge, resolve};
pub use plan::{Declared, LayerPlan};
pub use stack::Stack;

/// Most entries one layer, or the merged stack, may hold.
///
/// Real root filesystems hold at most a few hundred thousand entries; the cap stops a
/// hostile image from making the planner's memory (a few hundred bytes per entry)
/// grow without bound.
pub const MAX_ENTRIES: usize = 4_000_000;
