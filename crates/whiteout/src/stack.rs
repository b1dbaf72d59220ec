//! The merged view of a stack of layers.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use crate::entry::normalise;
use crate::key::Key;
use crate::{Declared, EntryKind, Error, LayerEntry, LayerPlan, MAX_ENTRIES, Merge, resolve};

/// Who provides a path of the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Node {
    kind: EntryKind,
    /// Index of the providing layer, 0 = bottom.
    provider: usize,
}

/// The merged view of a stack of layers: which layer provides each path of the result.
///
/// Paths are kept in a `BTreeMap` in component-wise order, so a subtree is one
/// contiguous range and removing it costs only its own size.
#[derive(Clone, Debug, Default)]
pub struct Stack {
    tree: BTreeMap<Key, Node>,
    layers: usize,
}

impl Stack {
    /// An empty stack.
    pub fn new() -> Stack {
        Stack::default()
    }

    /// Applies one more layer on top; on error the stack is left unchanged.
    ///
    /// `entries` are that layer's explicit entries, in any order; a path listed twice
    /// takes its last entry. An unlisted parent directory is implied: it keeps a lower
    /// directory (and its provider) or replaces a lower non-directory, and is otherwise
    /// provided by this layer.
    pub fn push<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a LayerEntry>,
    ) -> Result<(), Error> {
        self.apply(LayerPlan::new(entries)?)
    }

    /// Applies an already planned layer on top, like [`Stack::push`].
    pub fn apply(&mut self, plan: LayerPlan) -> Result<(), Error> {
        let (removals, opaque_dirs, tree) = plan.into_parts();
        if self.tree.len().saturating_add(tree.len()) > MAX_ENTRIES {
            return Err(Error::TooManyEntries {
                at: "in the merged stack",
            });
        }
        let layer = self.layers;
        for path in removals {
            self.remove_subtree(&Key::new(path), false);
        }
        for dir in opaque_dirs {
            self.remove_subtree(&Key::new(dir), true);
        }
        // Parents come before their children, so every parent is a directory by now.
        for (path, declared) in tree {
            let lower = self.tree.get(&path).map(|node| node.kind);
            let kind = match declared {
                Declared::Implied if lower == Some(EntryKind::Dir) => continue,
                // A lower non-directory has no subtree: inserting replaces it.
                Declared::Implied => EntryKind::Dir,
                Declared::Explicit(kind) => {
                    if resolve(lower, kind) == Merge::Replace {
                        self.remove_subtree(&path, true);
                    }
                    kind
                }
            };
            self.tree.insert(
                path,
                Node {
                    kind,
                    provider: layer,
                },
            );
        }
        self.layers += 1;
        Ok(())
    }

    /// Number of layers pushed.
    pub fn len(&self) -> usize {
        self.layers
    }

    /// Whether no layer has been pushed.
    pub fn is_empty(&self) -> bool {
        self.layers == 0
    }

    /// Number of paths in the result.
    pub fn entry_count(&self) -> usize {
        self.tree.len()
    }

    /// The kind and provider of one path of the result (`None` also for a path that
    /// could not be an entry, such as an absolute one).
    pub fn get(&self, path: &Path) -> Option<(EntryKind, usize)> {
        let key = Key::new(normalise(path).ok()?);
        self.tree.get(&key).map(|node| (node.kind, node.provider))
    }

    /// Every path of the result with its kind and providing layer (0 = bottom), parents
    /// before their children (sorted component-wise).
    pub fn entries(&self) -> impl Iterator<Item = (&Path, EntryKind, usize)> {
        self.tree
            .iter()
            .map(|(key, node)| (key.as_path(), node.kind, node.provider))
    }

    /// Removes `root`'s descendants, and `root` itself unless `keep_root`.
    fn remove_subtree(&mut self, root: &Key, keep_root: bool) {
        let doomed: Vec<Key> = self
            .tree
            .range((Bound::Included(root), Bound::Unbounded))
            .map(|(key, _)| key)
            .take_while(|key| key.is_within(root))
            .filter(|key| !(keep_root && *key == root))
            .cloned()
            .collect();
        for path in doomed {
            self.tree.remove(&path);
        }
    }
}

#[cfg(test)]
mod tests;
