//! What one layer does to the layers below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::entry::normalise;
use crate::key::Key;
use crate::marker::is_aufs_metadata;
use crate::{EntryKind, Error, LayerEntry, MAX_ENTRIES, Marker, parse_marker};

/// How a layer holds a path of its own tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declared {
    /// The layer lists the path (the last listing wins if it lists it twice).
    Explicit(EntryKind),
    /// A directory the layer does not list but needs as a parent of something it lists.
    Implied,
}

/// What a layer does to the layers below it.
///
/// AUFS metadata (`.wh..wh.plnk`, …) and anything beneath it is dropped whole, without
/// even implying its parent, as Docker does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerPlan {
    /// Outermost whiteout targets, sorted; nested ones are dropped as redundant.
    removals: Vec<PathBuf>,
    /// Directories holding an opaque marker, sorted.
    opaque_dirs: Vec<PathBuf>,
    /// The layer's own tree, markers excluded, implied parents included.
    tree: BTreeMap<Key, Declared>,
}

/// What one entry contributes to the plan.
enum Role {
    Content,
    Whiteout(Key),
    Opaque(Key),
    Ignored,
}

impl LayerPlan {
    /// Validates a layer's entries (any order; a repeated path's last entry wins) and plans it.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a LayerEntry>) -> Result<LayerPlan, Error> {
        let mut tree = BTreeMap::new();
        let mut whiteouts = BTreeSet::new();
        let mut opaque_dirs = BTreeSet::new();
        let mut markers = Vec::new();
        for (count, entry) in entries.into_iter().enumerate() {
            if count >= MAX_ENTRIES {
                return Err(Error::TooManyEntries { at: "in one layer" });
            }
            let path = Key::new(normalise(&entry.path)?);
            match role(path.as_path(), entry.kind)? {
                Role::Content => {
                    tree.insert(path, Declared::Explicit(entry.kind));
                }
                Role::Whiteout(hidden) => {
                    whiteouts.insert(hidden);
                    markers.push(path);
                }
                Role::Opaque(dir) => {
                    opaque_dirs.insert(dir);
                    markers.push(path);
                }
                Role::Ignored => {}
            }
        }
        let mut implied = BTreeSet::new();
        for path in tree.keys().chain(&markers) {
            imply_parents(&tree, &mut implied, path.as_path())?;
        }
        tree.extend(implied.into_iter().map(|dir| (dir, Declared::Implied)));
        Ok(LayerPlan {
            removals: outermost(whiteouts),
            opaque_dirs: opaque_dirs.into_iter().map(Key::into_path).collect(),
            tree,
        })
    }

    /// Lower paths to delete, with their subtrees, before this layer is applied.
    pub fn removals(&self) -> &[PathBuf] {
        &self.removals
    }

    /// Directories whose lower children are all deleted before this layer is applied
    /// (the empty path stands for the root).
    pub fn opaque_dirs(&self) -> &[PathBuf] {
        &self.opaque_dirs
    }

    /// True for marker entries and anything beneath a marker name: they never appear in a result.
    pub fn is_marker(path: &Path) -> bool {
        path.iter().any(|name| parse_marker(name).is_some())
    }

    /// The layer's own tree (markers excluded, implied parents included), parents first.
    pub fn entries(&self) -> impl Iterator<Item = (&Path, Declared)> {
        self.tree
            .iter()
            .map(|(key, declared)| (key.as_path(), *declared))
    }

    /// Splits the plan into removals, opaque directories and the layer's tree.
    pub(crate) fn into_parts(self) -> (Vec<PathBuf>, Vec<PathBuf>, BTreeMap<Key, Declared>) {
        (self.removals, self.opaque_dirs, self.tree)
    }
}

/// Classifies a normalised entry path, rejecting invalid markers.
fn role(path: &Path, kind: EntryKind) -> Result<Role, Error> {
    let mut names = path.iter();
    let Some(name) = names.next_back() else {
        return Ok(Role::Ignored); // `normalise` never returns an empty path
    };
    for (depth, dir) in names.enumerate() {
        if let Some(marker) = parse_marker(dir) {
            if is_aufs_metadata(marker) {
                return Ok(Role::Ignored);
            }
            let marker = path.iter().take(depth + 1).collect();
            return Err(Error::UnderMarker {
                path: path.to_owned(),
                marker,
            });
        }
    }
    let Some(marker) = parse_marker(name) else {
        return Ok(Role::Content);
    };
    if is_aufs_metadata(marker) {
        return Ok(Role::Ignored);
    }
    let invalid = |reason| {
        Err(Error::InvalidMarker {
            path: path.to_owned(),
            reason,
        })
    };
    if kind == EntryKind::Dir {
        return invalid("it is a directory; markers must be plain files");
    }
    let parent = path.parent().unwrap_or(Path::new(""));
    match marker {
        Marker::Opaque => Ok(Role::Opaque(Key::new(parent.to_owned()))),
        Marker::Whiteout(hidden) if hidden.is_empty() => invalid("it names no entry to hide"),
        Marker::Whiteout(hidden) if hidden == "." || hidden == ".." => {
            invalid("it would hide its own directory or that directory's parent")
        }
        Marker::Whiteout(hidden) => Ok(Role::Whiteout(Key::new(parent.join(hidden)))),
    }
}

/// Adds `path`'s unlisted ancestors to `implied`, checking none is a listed non-directory.
///
/// Stops at the first ancestor already known: a listed directory walks its own
/// ancestors, and an implied one had them walked when it was added.
fn imply_parents(
    tree: &BTreeMap<Key, Declared>,
    implied: &mut BTreeSet<Key>,
    path: &Path,
) -> Result<(), Error> {
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor.filter(|dir| !dir.as_os_str().is_empty()) {
        let key = Key::new(dir.to_owned());
        match tree.get(&key) {
            Some(Declared::Explicit(EntryKind::NonDir)) => {
                return Err(Error::UnderNonDirectory {
                    path: path.to_owned(),
                    parent: dir.to_owned(),
                });
            }
            Some(_) => return Ok(()),
            None if implied.contains(&key) => return Ok(()),
            None => {}
        }
        if tree.len() + implied.len() >= MAX_ENTRIES {
            return Err(Error::TooManyEntries { at: "in one layer" });
        }
        implied.insert(key);
        ancestor = dir.parent();
    }
    Ok(())
}

/// The sorted paths of `set` that have no ancestor in `set`.
fn outermost(set: BTreeSet<Key>) -> Vec<PathBuf> {
    let mut out: Vec<Key> = Vec::with_capacity(set.len());
    for path in set {
        // Component order puts a path's descendants right after it.
        if !out.last().is_some_and(|outer| path.is_within(outer)) {
            out.push(path);
        }
    }
    out.into_iter().map(Key::into_path).collect()
}

#[cfg(test)]
mod tests;
