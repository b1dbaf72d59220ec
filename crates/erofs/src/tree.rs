//! The layer's tree in memory, built entry by entry as extraction into an empty directory
//! would build it.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Limit;
use crate::ondisk::{Xattr, ft};
use crate::path::names;
use crate::{MAX_DIR_ENTRIES, MAX_METADATA_BYTES};

mod merge;

/// Index of a node in the tree.
pub(crate) type Id = u32;

/// The root directory's id.
pub(crate) const ROOT: Id = 0;

/// Mode of directories a layer needs but does not list, as the layer extractor makes them.
const IMPLIED_DIR_MODE: u16 = 0o755;

/// Bytes of memory one map entry costs beyond its name, estimated (a B-tree slot and the
/// boxed name's header).
const ENTRY_OVERHEAD: usize = 48;

/// Owner, permission bits, time and xattrs of one node.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Extended attributes, each name once.
    pub xattrs: Vec<Xattr>,
}

impl Meta {
    /// Root-owned, no xattrs.
    pub fn plain(mode: u16, mtime: i64) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime,
            mtime_nsec: 0,
            xattrs: Vec::new(),
        }
    }

    /// Takes `new`'s fields and xattrs, keeping own xattrs `new` does not name, as setting
    /// metadata on an existing directory does.
    fn merge(&mut self, new: Meta) {
        let mut xattrs = std::mem::take(&mut self.xattrs);
        xattrs.retain(|(i, n, _)| !new.xattrs.iter().any(|(j, m, _)| i == j && n == m));
        xattrs.extend(new.xattrs);
        *self = Meta { xattrs, ..new };
    }
}

/// A directory's entries and overlay markers.
#[derive(Default, Debug)]
pub(crate) struct Dir {
    /// Entries by name.
    pub children: BTreeMap<Box<[u8]>, Id>,
    /// Names `.wh.NAME` markers hide in the layers below.
    pub whiteouts: BTreeSet<Box<[u8]>>,
    /// Whether the directory hides its lower children (`.wh..wh..opq`).
    pub opaque: bool,
    /// Whether the layer only implies the directory (as a parent of something it lists):
    /// a merged image then keeps a lower directory's metadata.
    pub implied: bool,
}

impl Dir {
    /// An empty directory the layer does not list.
    fn implied() -> Dir {
        Dir {
            implied: true,
            ..Dir::default()
        }
    }
}

/// What a node is.
#[derive(Debug)]
pub(crate) enum Body {
    /// A regular file whose data is at `blkaddr` in the data area.
    File {
        /// First block (0 when empty).
        blkaddr: u32,
        /// Bytes.
        size: u64,
    },
    /// A directory.
    Dir(Dir),
    /// A symlink and its target.
    Symlink(Box<[u8]>),
    /// A device or FIFO: its directory file type and encoded device number.
    Special {
        /// [`ft::CHR`], [`ft::BLK`] or [`ft::FIFO`].
        ty: u8,
        /// Device number as the kernel encodes it.
        rdev: u32,
    },
}

impl Body {
    /// The directory entry file type.
    pub fn file_type(&self) -> u8 {
        match self {
            Body::File { .. } => ft::REG,
            Body::Dir(_) => ft::DIR,
            Body::Symlink(_) => ft::LNK,
            Body::Special { ty, .. } => *ty,
        }
    }
}

/// One file, directory, link or node.
#[derive(Debug)]
pub(crate) struct Node {
    /// Its metadata.
    pub meta: Meta,
    /// What it is.
    pub body: Body,
}

/// Why the tree refused an operation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The first `depth` names of the path lead to a non-directory (`symlink`: a symlink).
    NotDir {
        /// How many names of the path lead to it.
        depth: usize,
        /// Whether it is a symlink.
        symlink: bool,
    },
    /// A cap was reached.
    Limit(Limit, u64),
}

/// The image's tree: an arena of nodes, the root first. Replaced nodes stay in the arena,
/// unreachable, and are never written.
///
/// A layer is read into the tree under [`Tree::root`]: [`ROOT`] itself for a single layer's
/// image; for a merged image, a root of its own that is then merged into [`ROOT`] (see
/// `merge`), so the layers share one arena and one memory cap.
pub(crate) struct Tree {
    /// All nodes, by id.
    pub nodes: Vec<Node>,
    /// Root of the layer being read.
    pub root: Id,
    memory: usize,
    implied_mtime: i64,
}

impl Tree {
    /// A tree with only an implied root.
    pub fn new(implied_mtime: i64) -> Tree {
        let root = Node {
            meta: Meta::plain(IMPLIED_DIR_MODE, implied_mtime),
            body: Body::Dir(Dir::implied()),
        };
        Tree {
            nodes: vec![root],
            root: ROOT,
            memory: 0,
            implied_mtime,
        }
    }

    /// Counts `bytes` more of memory against [`MAX_METADATA_BYTES`].
    fn charge(&mut self, bytes: usize) -> Result<(), Refusal> {
        self.memory = self.memory.saturating_add(bytes);
        if self.memory > MAX_METADATA_BYTES {
            return Err(Refusal::Limit(Limit::Metadata, MAX_METADATA_BYTES as u64));
        }
        Ok(())
    }

    fn dir_mut(&mut self, id: Id) -> Option<&mut Dir> {
        match &mut self.nodes[id as usize].body {
            Body::Dir(dir) => Some(dir),
            _ => None,
        }
    }

    fn add(&mut self, node: Node) -> Result<Id, Refusal> {
        let xattr_bytes: usize = node
            .meta
            .xattrs
            .iter()
            .map(|(_, n, v)| n.len() + v.len())
            .sum();
        let body_bytes = match &node.body {
            Body::Symlink(target) => target.len(),
            _ => 0,
        };
        self.charge(size_of::<Node>() + xattr_bytes + body_bytes)?;
        let id = Id::try_from(self.nodes.len())
            .map_err(|_| Refusal::Limit(Limit::Metadata, MAX_METADATA_BYTES as u64))?;
        self.nodes.push(node);
        Ok(id)
    }

    /// Adds `node` without a name in the tree; it is written only if something links to it.
    pub fn detached(&mut self, node: Node) -> Result<Id, Refusal> {
        self.add(node)
    }

    /// Binds `name` in directory `parent` to `id`, replacing what was there.
    fn bind(&mut self, parent: Id, name: &[u8], id: Id) -> Result<(), Refusal> {
        let dir = self.dir_mut(parent).ok_or(Refusal::NotDir {
            depth: 0,
            symlink: false,
        })?;
        if let Some(slot) = dir.children.get_mut(name) {
            *slot = id;
            return Ok(());
        }
        if dir.children.len() + dir.whiteouts.len() >= MAX_DIR_ENTRIES {
            return Err(Refusal::Limit(Limit::DirEntries, MAX_DIR_ENTRIES as u64));
        }
        dir.children.insert(name.into(), id);
        self.charge(name.len() + ENTRY_OVERHEAD)
    }

    /// The directory at normalised `path`, making missing ones (mode 0755, root-owned).
    pub fn dir(&mut self, path: &[u8]) -> Result<Id, Refusal> {
        let mut id = self.root;
        for (depth, name) in names(path).enumerate() {
            let child = match self.dir_mut(id) {
                Some(dir) => dir.children.get(name).copied(),
                None => unreachable_dir(depth)?,
            };
            id = match child {
                Some(child) => match &self.nodes[child as usize].body {
                    Body::Dir(_) => child,
                    body => {
                        return Err(Refusal::NotDir {
                            depth: depth + 1,
                            symlink: matches!(body, Body::Symlink(_)),
                        });
                    }
                },
                None => {
                    let node = Node {
                        meta: Meta::plain(IMPLIED_DIR_MODE, self.implied_mtime),
                        body: Body::Dir(Dir::implied()),
                    };
                    let child = self.add(node)?;
                    self.bind(id, name, child)?;
                    child
                }
            };
        }
        Ok(id)
    }

    /// The node at normalised `path`, if there is one (nothing is made).
    pub fn lookup(&self, path: &[u8]) -> Option<Id> {
        self.lookup_from(self.root, path)
    }

    /// The node at normalised `path` below directory `id`, if there is one.
    fn lookup_from(&self, mut id: Id, path: &[u8]) -> Option<Id> {
        for name in names(path) {
            match &self.nodes[id as usize].body {
                Body::Dir(dir) => id = *dir.children.get(name)?,
                _ => return None,
            }
        }
        Some(id)
    }

    /// Puts `node` at `name` in `parent`: a directory over a directory takes the new
    /// metadata and keeps its entries, anything else replaces what was there (a directory
    /// with its whole tree).
    pub fn put(&mut self, parent: Id, name: &[u8], node: Node) -> Result<(), Refusal> {
        let existing = self
            .dir_mut(parent)
            .and_then(|d| d.children.get(name).copied());
        if let Some(old) = existing {
            let old_node = &mut self.nodes[old as usize];
            if let (Body::Dir(dir), Body::Dir(_)) = (&mut old_node.body, &node.body) {
                dir.implied = false;
                old_node.meta.merge(node.meta);
                return Ok(());
            }
        }
        let id = self.add(node)?;
        self.bind(parent, name, id)
    }

    /// Replaces the root's metadata (the layer listed `./`).
    pub fn set_root_meta(&mut self, meta: Meta) {
        let root = &mut self.nodes[self.root as usize];
        if let Body::Dir(dir) = &mut root.body {
            dir.implied = false;
        }
        root.meta.merge(meta);
    }

    /// Gives `name` in `parent` the existing non-directory `target` too (a hard link).
    pub fn link(&mut self, parent: Id, name: &[u8], target: Id) -> Result<(), Refusal> {
        self.bind(parent, name, target)
    }

    /// Records that `parent` hides `name` of the layers below (`.wh.NAME`).
    pub fn whiteout(&mut self, parent: Id, name: &[u8]) -> Result<(), Refusal> {
        let dir = self.dir_mut(parent).ok_or(Refusal::NotDir {
            depth: 0,
            symlink: false,
        })?;
        if dir.whiteouts.contains(name) {
            return Ok(());
        }
        if dir.children.len() + dir.whiteouts.len() >= MAX_DIR_ENTRIES {
            return Err(Refusal::Limit(Limit::DirEntries, MAX_DIR_ENTRIES as u64));
        }
        dir.whiteouts.insert(name.into());
        self.charge(name.len() + ENTRY_OVERHEAD)
    }

    /// Marks directory `id` opaque (`.wh..wh..opq`).
    pub fn set_opaque(&mut self, id: Id) {
        if let Some(dir) = self.dir_mut(id) {
            dir.opaque = true;
        }
    }

    /// Turns every reachable directory's whiteouts (of a single layer's image, read under
    /// [`ROOT`]) into what overlayfs reads: a name also
    /// held by an entry of this layer stays that entry (and a directory there becomes
    /// opaque, as the lower one is hidden); any other becomes a character device 0:0.
    pub fn apply_whiteouts(&mut self) -> Result<(), Refusal> {
        let mut stack = vec![ROOT];
        while let Some(id) = stack.pop() {
            let Some(dir) = self.dir_mut(id) else {
                continue;
            };
            let whiteouts = std::mem::take(&mut dir.whiteouts);
            let children: Vec<Id> = dir.children.values().copied().collect();
            for name in whiteouts {
                let held = self
                    .dir_mut(id)
                    .and_then(|d| d.children.get(&name).copied());
                match held {
                    Some(child) => self.set_opaque(child),
                    None => {
                        let node = Node {
                            meta: Meta::plain(0, self.implied_mtime),
                            body: Body::Special {
                                ty: ft::CHR,
                                rdev: 0,
                            },
                        };
                        let wid = self.add(node)?;
                        if let Some(dir) = self.dir_mut(id) {
                            dir.children.insert(name, wid);
                        }
                    }
                }
            }
            stack.extend(children.into_iter().filter(|&c| self.dir_mut(c).is_some()));
        }
        Ok(())
    }
}

/// The walk only continues from directories, so this cannot happen; reported as a
/// non-directory rather than a panic.
fn unreachable_dir<T>(depth: usize) -> Result<T, Refusal> {
    Err(Refusal::NotDir {
        depth,
        symlink: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Node {
        Node {
            meta: Meta::plain(0o644, 1),
            body: Body::File {
                blkaddr: 0,
                size: 0,
            },
        }
    }

    fn dir(mode: u16) -> Node {
        Node {
            meta: Meta::plain(mode, 1),
            body: Body::Dir(Dir::default()),
        }
    }

    #[test]
    fn directories_merge_and_files_replace() {
        let mut t = Tree::new(0);
        let a = t.dir(b"a").unwrap();
        t.put(a, b"f", file()).unwrap();
        t.put(ROOT, b"a", dir(0o700)).unwrap();
        assert_eq!(t.lookup(b"a"), Some(a));
        assert_eq!(t.nodes[a as usize].meta.mode, 0o700);
        assert!(t.lookup(b"a/f").is_some());
        t.put(ROOT, b"a", file()).unwrap();
        assert!(t.lookup(b"a/f").is_none());
        assert_eq!(
            t.dir(b"a/b"),
            Err(Refusal::NotDir {
                depth: 1,
                symlink: false
            })
        );
    }

    #[test]
    fn whiteouts_become_devices_or_opaque_dirs() {
        let mut t = Tree::new(0);
        t.whiteout(ROOT, b"gone").unwrap();
        t.whiteout(ROOT, b"d").unwrap();
        t.whiteout(ROOT, b"f").unwrap();
        t.put(ROOT, b"d", dir(0o755)).unwrap();
        t.put(ROOT, b"f", file()).unwrap();
        t.apply_whiteouts().unwrap();
        let gone = t.lookup(b"gone").unwrap() as usize;
        assert!(matches!(
            t.nodes[gone].body,
            Body::Special {
                ty: ft::CHR,
                rdev: 0
            }
        ));
        let d = t.lookup(b"d").unwrap() as usize;
        assert!(matches!(&t.nodes[d].body, Body::Dir(dir) if dir.opaque));
        let f = t.lookup(b"f").unwrap() as usize;
        assert!(matches!(t.nodes[f].body, Body::File { .. }));
    }
}
