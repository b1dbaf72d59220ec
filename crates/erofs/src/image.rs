//! Writing what the stream left in memory: directory blocks, inodes, the superblock.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::{Error, Limit, Result};
use crate::layout::{self, Layout};
use crate::ondisk::{self, BLOCK, FLAT_INLINE, Inode, SLOT, SUPER_OFFSET, Superblock, ft};
use crate::options::{Options, Summary};
use crate::output::Output;
use crate::tree::{Body, Refusal, Tree};

/// File type bits of `i_mode`.
const S_IFREG: u16 = 0o100000;
const S_IFDIR: u16 = 0o040000;
const S_IFLNK: u16 = 0o120000;
const S_IFCHR: u16 = 0o020000;
const S_IFBLK: u16 = 0o060000;
const S_IFIFO: u16 = 0o010000;

/// Finishes the image whose file data `data` has written.
pub(crate) fn finish(
    mut tree: Tree,
    mut data: Output<'_>,
    out: &File,
    options: &Options,
    mut summary: Summary,
) -> Result<Summary> {
    tree.apply_whiteouts().map_err(refused)?;
    for node in &mut tree.nodes {
        if let Body::Dir(dir) = &node.body {
            if dir.opaque {
                node.meta
                    .xattrs
                    .push((4, b"overlay.opaque"[..].into(), b"y"[..].into()));
            }
        }
    }
    data.flush().map_err(Error::Write)?;
    let data_end = data.pos().div_ceil(BLOCK);
    let layout = layout::plan(&tree, data_end)?;
    let meta_start = u64::from(layout.meta_blkaddr) * BLOCK;
    let mut blocks = Output::new(out, data_end * BLOCK);
    let mut meta = Output::new(out, meta_start);
    let mut buf = Vec::new();
    let mut live = 0u64;
    for (i, item) in layout.items.iter().enumerate() {
        let node = &tree.nodes[item.id as usize];
        let content = match &node.body {
            Body::Dir(dir) => Some(dir_content(&tree, &layout, i, dir)),
            Body::Symlink(target) => Some(target.to_vec()),
            _ => None,
        };
        let (kind, dev) = match &node.body {
            Body::File { .. } => {
                summary.files += 1;
                (S_IFREG, false)
            }
            Body::Dir(dir) => {
                summary.dirs += 1;
                summary.opaque_dirs += u64::from(dir.opaque);
                (S_IFDIR, false)
            }
            Body::Symlink(_) => {
                summary.symlinks += 1;
                (S_IFLNK, false)
            }
            Body::Special { ty, rdev } => {
                if *ty == ft::CHR && *rdev == 0 {
                    summary.whiteouts += 1;
                } else {
                    summary.specials += 1;
                }
                let kind = match *ty {
                    ft::CHR => S_IFCHR,
                    ft::BLK => S_IFBLK,
                    _ => S_IFIFO,
                };
                (kind, true)
            }
        };
        if !matches!(node.body, Body::Dir(_)) {
            summary.hard_links += u64::from(item.nlink - 1);
        }
        if let Body::File { size, .. } = node.body {
            live += size;
        }
        buf.clear();
        Inode {
            layout: item.layout,
            xattr_size: item.xattr_size,
            mode: kind | node.meta.mode,
            size: if dev { 0 } else { item.size },
            u: item.u,
            ino: i as u32 + 1,
            uid: node.meta.uid,
            gid: node.meta.gid,
            mtime: node.meta.mtime,
            mtime_nsec: node.meta.mtime_nsec,
            nlink: item.nlink,
        }
        .encode(&mut buf);
        ondisk::encode_xattrs(&node.meta.xattrs, &mut buf);
        if let Some(content) = content {
            let full = if item.layout == FLAT_INLINE {
                content.len() - item.inline as usize
            } else {
                content.len()
            };
            if full > 0 {
                let at = u64::from(item.u) * BLOCK;
                blocks.zeros_to(at).map_err(Error::Write)?;
                blocks.write(&content[..full]).map_err(Error::Write)?;
                let end = blocks.pos().next_multiple_of(BLOCK);
                blocks.zeros_to(end).map_err(Error::Write)?;
            }
            buf.extend_from_slice(&content[full..]);
        }
        meta.zeros_to(meta_start + item.nid * SLOT)
            .map_err(Error::Write)?;
        meta.write(&buf).map_err(Error::Write)?;
    }
    blocks.flush().map_err(Error::Write)?;
    summary.dead_bytes = summary.data_bytes.saturating_sub(live);
    let meta_end = meta_start + layout.meta_bytes;
    meta.zeros_to(meta_end.next_multiple_of(BLOCK))
        .map_err(Error::Write)?;
    meta.flush().map_err(Error::Write)?;
    let total = meta_end.div_ceil(BLOCK);
    let blocks_u32 = u32::try_from(total).map_err(|_| Error::limit(Limit::ImageSize, u32::MAX))?;
    let sb = Superblock {
        root_nid: 0,
        inos: layout.items.len() as u64,
        build_time: options.build_time,
        blocks: blocks_u32,
        meta_blkaddr: layout.meta_blkaddr,
        uuid: options.uuid,
        volume_name: &options.volume_name,
    };
    let mut first = vec![0u8; BLOCK as usize];
    first[SUPER_OFFSET as usize..SUPER_OFFSET as usize + 128].copy_from_slice(&sb.encode());
    out.write_all_at(&first, 0).map_err(Error::Write)?;
    out.set_len(total * BLOCK).map_err(Error::Write)?;
    summary.image_bytes = total * BLOCK;
    Ok(summary)
}

/// The blocks of the directory at `layout.items[i]`.
fn dir_content(tree: &Tree, layout: &Layout, i: usize, dir: &crate::tree::Dir) -> Vec<u8> {
    let item = &layout.items[i];
    let parent_nid = layout.items[item.parent as usize].nid;
    let entries: Vec<ondisk::Dirent<'_>> = layout::dir_entries(dir)
        .into_iter()
        .map(|(name, child)| match child {
            Some(id) => (
                name,
                layout.nid(id),
                tree.nodes[id as usize].body.file_type(),
            ),
            None if name == b"." => (name, item.nid, ft::DIR),
            None => (name, parent_nid, ft::DIR),
        })
        .collect();
    ondisk::dir_data(&entries)
}

fn refused(r: Refusal) -> Error {
    match r {
        Refusal::Limit(limit, max) => Error::limit(limit, max),
        // Whiteouts are only added to directories.
        Refusal::NotDir { .. } => Error::limit(Limit::Metadata, crate::MAX_METADATA_BYTES),
    }
}
