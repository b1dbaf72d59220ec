//! Merged mode: each layer is read under a root of its own, exactly as for a single layer's
//! image, then merged into the image's root as OCI layers stack (the `whiteout` crate's
//! rules, which the rootfs assembly follows and which overlayfs gives for the layers'
//! images).
//!
//! The layer's `.wh.NAME` markers remove `NAME` of the earlier layers, its opaque markers
//! every earlier child of their directory; then each of its entries meets what the earlier
//! layers left: a directory over a directory merges (the layer's metadata, unless the layer
//! only implies the directory, and the children of both), anything else replaces. Markers
//! never reach the merged tree, since nothing lies below it. Nodes are never copied, so a
//! hard link keeps sharing its inode, and what is removed stays in the arena, unwritten.

use super::{Body, Dir, IMPLIED_DIR_MODE, Id, Meta, Node, ROOT, Refusal, Tree};
use crate::MAX_DIR_ENTRIES;
use crate::error::Limit;
use crate::path::names;

impl Tree {
    /// Starts reading a layer of a merged image under a root of its own.
    pub fn begin_layer(&mut self) -> Result<(), Refusal> {
        let node = Node {
            meta: Meta::plain(IMPLIED_DIR_MODE, self.implied_mtime),
            body: Body::Dir(Dir::implied()),
        };
        self.root = self.add(node)?;
        Ok(())
    }

    /// The node the earlier layers left at normalised `path`, unless the layer being read
    /// hides it so far: with a marker of the path or of a parent read until now, or with a
    /// non-directory of its own on the way. `None` when reading a single layer's image.
    pub fn lookup_lower(&self, path: &[u8]) -> Option<Id> {
        if self.root == ROOT {
            return None;
        }
        let mut id = self.root;
        for name in names(path) {
            let Body::Dir(dir) = &self.nodes[id as usize].body else {
                return None;
            };
            if dir.opaque || dir.whiteouts.contains(name) {
                return None;
            }
            match dir.children.get(name) {
                Some(&child) => id = child,
                None => return self.lookup_from(ROOT, path),
            }
        }
        // The layer has a node of its own at `path`, which takes precedence.
        None
    }

    /// Merges the layer read under [`Tree::root`] into [`ROOT`], and reads under [`ROOT`]
    /// again. Refused only past [`MAX_DIR_ENTRIES`].
    pub fn merge_layer(&mut self) -> Result<(), Refusal> {
        let layer = std::mem::replace(&mut self.root, ROOT);
        let mut pairs = vec![(ROOT, layer)];
        while let Some((into, from)) = pairs.pop() {
            let Some(dir) = self.dir_mut(from) else {
                continue;
            };
            let Dir {
                children,
                whiteouts,
                opaque,
                implied,
            } = std::mem::take(dir);
            if !implied {
                // The upper directory's metadata, whole: what overlayfs shows and what the
                // rootfs assembly copies from the layer that provides the directory.
                let meta =
                    std::mem::replace(&mut self.nodes[from as usize].meta, Meta::plain(0, 0));
                self.nodes[into as usize].meta = meta;
            }
            let Some(target) = self.dir_mut(into) else {
                continue;
            };
            if opaque {
                target.children.clear();
            }
            for name in &whiteouts {
                target.children.remove(name);
            }
            for (name, child) in children {
                let lower = self
                    .dir_mut(into)
                    .and_then(|d| d.children.get(&name).copied());
                if let Some(lower) = lower {
                    if self.is_dir(lower) && self.is_dir(child) {
                        pairs.push((lower, child));
                        continue;
                    }
                }
                self.scrub(child);
                let Some(target) = self.dir_mut(into) else {
                    continue;
                };
                if lower.is_none() && target.children.len() >= MAX_DIR_ENTRIES {
                    return Err(Refusal::Limit(Limit::DirEntries, MAX_DIR_ENTRIES as u64));
                }
                target.children.insert(name, child);
            }
        }
        Ok(())
    }

    fn is_dir(&self, id: Id) -> bool {
        matches!(self.nodes[id as usize].body, Body::Dir(_))
    }

    /// Drops the markers of the layer's subtree at `id`, which lands on nothing.
    fn scrub(&mut self, id: Id) {
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            let Some(dir) = self.dir_mut(id) else {
                continue;
            };
            dir.whiteouts.clear();
            dir.opaque = false;
            dir.implied = false;
            let children: Vec<Id> = dir.children.values().copied().collect();
            stack.extend(children.into_iter().filter(|&c| self.is_dir(c)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> Node {
        Node {
            meta: Meta::plain(0o644, 1),
            body: Body::File { blkaddr: 0, size },
        }
    }

    fn dir(mode: u16) -> Node {
        Node {
            meta: Meta::plain(mode, 1),
            body: Body::Dir(Dir::default()),
        }
    }

    fn mode(t: &Tree, path: &[u8]) -> Option<u16> {
        t.lookup_from(ROOT, path)
            .map(|id| t.nodes[id as usize].meta.mode)
    }

    #[test]
    fn layers_stack_as_oci_says() {
        let mut t = Tree::new(0);
        t.begin_layer().unwrap();
        let d = t.dir(b"d").unwrap();
        t.put(d, b"old", file(1)).unwrap();
        t.put(t.root, b"d", dir(0o700)).unwrap();
        let o = t.dir(b"o").unwrap();
        t.put(o, b"lower", file(1)).unwrap();
        t.put(t.root, b"gone", file(1)).unwrap();
        t.merge_layer().unwrap();
        assert_eq!(mode(&t, b"d"), Some(0o700));

        t.begin_layer().unwrap();
        // Implied: the lower directory keeps its metadata.
        let d = t.dir(b"d").unwrap();
        t.put(d, b"new", file(1)).unwrap();
        let o = t.dir(b"o").unwrap();
        t.set_opaque(o);
        t.put(o, b"upper", file(1)).unwrap();
        let root = t.root;
        t.whiteout(root, b"gone").unwrap();
        assert!(t.lookup_lower(b"d/old").is_some());
        assert!(
            t.lookup_lower(b"o/lower").is_none(),
            "hidden by the opaque marker"
        );
        assert!(t.lookup_lower(b"gone").is_none(), "hidden by the whiteout");
        t.merge_layer().unwrap();
        assert_eq!(mode(&t, b"d"), Some(0o700));
        assert!(mode(&t, b"d/old").is_some() && mode(&t, b"d/new").is_some());
        assert!(mode(&t, b"o/lower").is_none() && mode(&t, b"o/upper").is_some());
        assert!(mode(&t, b"gone").is_none());
        let Body::Dir(o) = &t.nodes[t.lookup_from(ROOT, b"o").unwrap() as usize].body else {
            panic!("o is a directory");
        };
        assert!(
            !o.opaque && o.whiteouts.is_empty(),
            "no marker reaches the image"
        );

        t.begin_layer().unwrap();
        t.put(t.root, b"d", file(1)).unwrap();
        t.merge_layer().unwrap();
        assert!(
            mode(&t, b"d/old").is_none(),
            "a file replaces the whole directory"
        );
    }
}
