//! Where each inode and each block of the image goes, decided before anything is written
//! (a directory's blocks name the nids of its children, which come after it).

use crate::error::{Error, Limit, Result};
use crate::ondisk::{self, BLOCK, FLAT_INLINE, FLAT_PLAIN, INODE_SIZE, SLOT};
use crate::tree::{Body, Dir, Id, ROOT, Tree};

/// Marks a node not (yet) placed.
const UNPLACED: u32 = u32::MAX;

/// One inode of the image.
#[derive(Clone, Debug)]
pub(crate) struct Placed {
    /// The node.
    pub id: Id,
    /// Index (in [`Layout::items`]) of the directory it was first found in.
    pub parent: u32,
    /// Its nid: 32-byte slot from the metadata area's start.
    pub nid: u64,
    /// [`FLAT_PLAIN`] or [`FLAT_INLINE`].
    pub layout: u8,
    /// Size of its data.
    pub size: u64,
    /// First block of its data in the data area, or the device number.
    pub u: u32,
    /// Bytes of data stored inline after the inode.
    pub inline: u64,
    /// Bytes of its inline xattr area.
    pub xattr_size: usize,
    /// Links to it.
    pub nlink: u32,
}

/// The whole plan.
pub(crate) struct Layout {
    /// Inodes in the order they are written: the root first, then breadth-first.
    pub items: Vec<Placed>,
    /// For each node id, its index in `items` ([`u32::MAX`] when unreachable).
    pub index: Vec<u32>,
    /// First block of the metadata area.
    pub meta_blkaddr: u32,
    /// Bytes of the metadata area.
    pub meta_bytes: u64,
}

impl Layout {
    /// The nid of node `id`, which must be reachable.
    pub fn nid(&self, id: Id) -> u64 {
        self.items[self.index[id as usize] as usize].nid
    }
}

/// The sorted entries of `dir`: `.`, `..` and its children, as (name, child or `None` for
/// the two dots).
pub(crate) fn dir_entries(dir: &Dir) -> Vec<(&[u8], Option<Id>)> {
    let mut entries: Vec<(&[u8], Option<Id>)> = Vec::with_capacity(dir.children.len() + 2);
    entries.push((b".", None));
    entries.push((b"..", None));
    entries.extend(dir.children.iter().map(|(name, &id)| (&name[..], Some(id))));
    // Lookups binary-search the names, so they must be in byte order across all blocks.
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Plans the image of `tree` whose file data ends before block `data_end`.
pub(crate) fn plan(tree: &Tree, data_end: u64) -> Result<Layout> {
    let (mut items, index) = walk(tree)?;
    let mut next_block = data_end;
    for item in &mut items {
        let node = &tree.nodes[item.id as usize];
        item.xattr_size = ondisk::xattr_size(&node.meta.xattrs);
        let (size, full_blocks, tail) = match &node.body {
            Body::File { blkaddr, size } => {
                item.u = *blkaddr;
                item.size = *size;
                continue;
            }
            Body::Special { rdev, .. } => {
                item.u = *rdev;
                continue;
            }
            Body::Dir(dir) => {
                let entries = dir_entries(dir);
                let (starts, size) = ondisk::dir_blocks(entries.iter().map(|e| e.0));
                (
                    size,
                    starts.len() as u64 - 1,
                    size - (starts.len() as u64 - 1) * BLOCK,
                )
            }
            Body::Symlink(target) => (target.len() as u64, 0, target.len() as u64),
        };
        item.size = size;
        // The tail goes inline when it fits in one block with the inode and its xattrs (a
        // full last block would be a whole block of metadata: better plain).
        let fits = INODE_SIZE + item.xattr_size as u64 + tail <= BLOCK;
        let (blocks, inline) = if tail < BLOCK && fits {
            item.layout = FLAT_INLINE;
            (full_blocks, tail)
        } else {
            item.layout = FLAT_PLAIN;
            (size.div_ceil(BLOCK), 0)
        };
        item.inline = inline;
        if blocks > 0 {
            item.u = block_addr(next_block)?;
            next_block += blocks;
        }
    }
    let meta_blkaddr = block_addr(next_block)?;
    let mut pos = 0u64;
    for item in &mut items {
        pos = pos.next_multiple_of(SLOT);
        // Keep the inode itself within a block, and inline data within the next one.
        if pos % BLOCK + INODE_SIZE > BLOCK {
            pos = pos.next_multiple_of(BLOCK);
        }
        if item.inline > 0 {
            let tail_at = pos + INODE_SIZE + item.xattr_size as u64;
            if tail_at % BLOCK + item.inline > BLOCK {
                pos = pos.next_multiple_of(BLOCK);
            }
        }
        item.nid = pos / SLOT;
        pos += INODE_SIZE + item.xattr_size as u64 + item.inline;
    }
    Ok(Layout {
        items,
        index,
        meta_blkaddr,
        meta_bytes: pos,
    })
}

fn block_addr(block: u64) -> Result<u32> {
    u32::try_from(block).map_err(|_| Error::limit(Limit::ImageSize, u32::MAX))
}

/// Lists the reachable nodes breadth-first from the root (so its nid is 0, as the
/// superblock's 16-bit root nid needs, and siblings sit together), counting links.
fn walk(tree: &Tree) -> Result<(Vec<Placed>, Vec<u32>)> {
    let mut index = vec![UNPLACED; tree.nodes.len()];
    let item = |id: Id, parent: u32| Placed {
        id,
        parent,
        nid: 0,
        layout: FLAT_PLAIN,
        size: 0,
        u: 0,
        inline: 0,
        xattr_size: 0,
        nlink: 1,
    };
    let mut items = vec![item(ROOT, 0)];
    index[ROOT as usize] = 0;
    let mut i = 0;
    while i < items.len() {
        if let Body::Dir(dir) = &tree.nodes[items[i].id as usize].body {
            let mut subdirs = 0u32;
            for &child in dir.children.values() {
                let is_dir = matches!(tree.nodes[child as usize].body, Body::Dir(_));
                subdirs += u32::from(is_dir);
                match index[child as usize] {
                    UNPLACED => {
                        index[child as usize] = u32::try_from(items.len())
                            .map_err(|_| Error::limit(Limit::Entries, u32::MAX))?;
                        items.push(item(child, i as u32));
                    }
                    // Only non-directories are met twice: hard links.
                    seen => items[seen as usize].nlink += 1,
                }
            }
            items[i].nlink = 2u32.saturating_add(subdirs);
        }
        i += 1;
    }
    Ok((items, index))
}
