//! A pure structural check of an image this crate wrote, for tests and fuzzing where
//! mounting is not possible: it walks the tree from the superblock the way the kernel does.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::ondisk::{
    BLOCK, BLOCK_BITS, DIRENT_SIZE, FLAT_INLINE, FLAT_PLAIN, INODE_SIZE, SLOT, SUPER_OFFSET,
};

/// What [`verify`] found in an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Census {
    /// Directories, the root included.
    pub dirs: u64,
    /// Inodes reached (each once, however many names it has).
    pub inodes: u64,
    /// Directory entries other than `.` and `..`.
    pub names: u64,
}

/// Checks that `image` is a well-formed uncompressed EROFS image of the shape this crate
/// writes (4 KiB blocks, extended inodes, plain or inline data, inline xattrs): every
/// inode, xattr area and data extent within the image, inline data within one block,
/// directory names sorted across blocks, `.` and `..` right, no directory reached twice.
pub fn verify(image: &[u8]) -> Result<Census> {
    let bad = |why: String| Error::Corrupt(why);
    let sb = image
        .get(SUPER_OFFSET as usize..SUPER_OFFSET as usize + 128)
        .ok_or_else(|| bad("shorter than a superblock".into()))?;
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    if le32(sb, 0) != 0xE0F5_E1E2 || sb[12] != BLOCK_BITS {
        return Err(bad("no EROFS superblock with 4 KiB blocks".into()));
    }
    if u64::from(le32(sb, 36)) * BLOCK != image.len() as u64 {
        return Err(bad(
            "the superblock's block count is not the image's size".into()
        ));
    }
    let meta = u64::from(le32(sb, 40)) * BLOCK;
    let root = u64::from(u16::from_le_bytes([sb[14], sb[15]]));
    let inode = |nid: u64| -> Result<Inode<'_>> { Inode::read(image, meta, nid) };
    let mut census = Census::default();
    let mut seen = HashSet::new();
    let mut dirs_seen = HashSet::new();
    let mut stack = vec![(root, root)];
    while let Some((nid, parent)) = stack.pop() {
        if !dirs_seen.insert(nid) {
            return Err(bad(format!("directory nid {nid} is reached twice")));
        }
        seen.insert(nid);
        census.dirs += 1;
        let dir = inode(nid)?;
        let data = dir.data()?;
        let mut last: Option<&[u8]> = None;
        for block in data.chunks(BLOCK as usize) {
            if block.len() < DIRENT_SIZE as usize {
                return Err(bad(format!(
                    "directory nid {nid}: a block too short for an entry"
                )));
            }
            let first_off = usize::from(u16::from_le_bytes([block[8], block[9]]));
            if first_off == 0 || first_off % DIRENT_SIZE as usize != 0 || first_off > block.len() {
                return Err(bad(format!("directory nid {nid}: bad first name offset")));
            }
            let count = first_off / DIRENT_SIZE as usize;
            for i in 0..count {
                let d = &block[i * 12..i * 12 + 12];
                let child =
                    u64::from_le_bytes(d[..8].try_into().map_err(|_| bad("dirent".into()))?);
                let off = usize::from(u16::from_le_bytes([d[8], d[9]]));
                let end = if i + 1 < count {
                    usize::from(u16::from_le_bytes([block[i * 12 + 20], block[i * 12 + 21]]))
                } else {
                    block[off.min(block.len())..]
                        .iter()
                        .position(|&b| b == 0)
                        .map_or(block.len(), |p| off + p)
                };
                let name = block
                    .get(off..end)
                    .filter(|n| !n.is_empty() && n.len() <= 255);
                let name =
                    name.ok_or_else(|| bad(format!("directory nid {nid}: bad name bounds")))?;
                if last.is_some_and(|l| l >= name) {
                    return Err(bad(format!("directory nid {nid}: names out of order")));
                }
                last = Some(name);
                match name {
                    b"." if child != nid => return Err(bad(format!("nid {nid}: `.` is wrong"))),
                    b".." if child != parent => {
                        return Err(bad(format!("nid {nid}: `..` is wrong")));
                    }
                    b"." | b".." => continue,
                    _ => {}
                }
                census.names += 1;
                let target = inode(child)?;
                if target.mode & 0o170000 == 0o040000 {
                    if d[10] != 2 {
                        return Err(bad(format!("nid {child}: a directory typed {}", d[10])));
                    }
                    stack.push((child, nid));
                } else if seen.insert(child) {
                    target.data()?;
                }
            }
        }
    }
    census.inodes = seen.len() as u64;
    Ok(census)
}

/// The fields of one extended inode [`verify`] needs.
struct Inode<'a> {
    image: &'a [u8],
    /// Offset of the inode.
    at: u64,
    layout: u8,
    xattr_size: u64,
    mode: u16,
    size: u64,
    u: u32,
}

impl<'a> Inode<'a> {
    fn read(image: &'a [u8], meta: u64, nid: u64) -> Result<Inode<'a>> {
        let bad = |why: &str| Error::Corrupt(format!("inode nid {nid}: {why}"));
        let at = nid
            .checked_mul(SLOT)
            .and_then(|o| o.checked_add(meta))
            .ok_or_else(|| bad("beyond the image"))?;
        let raw = usize::try_from(at)
            .ok()
            .and_then(|a| image.get(a..a.checked_add(INODE_SIZE as usize)?))
            .ok_or_else(|| bad("beyond the image"))?;
        let format = u16::from_le_bytes([raw[0], raw[1]]);
        let icount = u64::from(u16::from_le_bytes([raw[2], raw[3]]));
        let layout = ((format >> 1) & 7) as u8;
        if format & 1 != 1 || !(layout == FLAT_PLAIN || layout == FLAT_INLINE) {
            return Err(bad("not an extended, uncompressed inode"));
        }
        let xattr_size = if icount == 0 {
            0
        } else {
            12 + 4 * (icount - 1)
        };
        let mut size = [0u8; 8];
        size.copy_from_slice(&raw[8..16]);
        Ok(Inode {
            image,
            at,
            layout,
            xattr_size,
            mode: u16::from_le_bytes([raw[4], raw[5]]),
            size: u64::from_le_bytes(size),
            u: u32::from_le_bytes([raw[16], raw[17], raw[18], raw[19]]),
        })
    }

    /// The inode's data (nothing for devices and FIFOs), checked to lie within the image.
    fn data(&self) -> Result<Vec<u8>> {
        let bad = |why: &str| Error::Corrupt(format!("inode at {}: {why}", self.at));
        let kind = self.mode & 0o170000;
        if !matches!(kind, 0o100000 | 0o040000 | 0o120000) {
            return Ok(Vec::new());
        }
        let tail = if self.layout == FLAT_INLINE {
            self.size % BLOCK
        } else {
            0
        };
        let head = self.size - tail;
        let start = u64::from(self.u) * BLOCK;
        let head_range = usize::try_from(start)
            .ok()
            .zip(
                start
                    .checked_add(head)
                    .and_then(|e| usize::try_from(e).ok()),
            )
            .filter(|&(_, e)| head == 0 || e <= self.image.len())
            .ok_or_else(|| bad("data beyond the image"))?;
        let mut out = if head == 0 {
            Vec::new()
        } else {
            self.image[head_range.0..head_range.1].to_vec()
        };
        if tail > 0 {
            let tail_at = self.at.saturating_add(INODE_SIZE + self.xattr_size);
            if tail_at % BLOCK + tail > BLOCK {
                return Err(bad("inline data crosses a block boundary"));
            }
            let t = usize::try_from(tail_at).map_err(|_| bad("inline data beyond the image"))?;
            let got = t
                .checked_add(tail as usize)
                .and_then(|e| self.image.get(t..e))
                .ok_or_else(|| bad("inline data beyond the image"))?;
            out.extend_from_slice(got);
        } else if head > 0 && self.layout == FLAT_INLINE {
            return Err(bad("inline layout without inline data"));
        }
        if kind == 0o040000 && out.is_empty() {
            return Err(bad("an empty directory (no `.`)"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, "d/f", &b"hello"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_mtime(0);
        b.append_link(&mut h, "d/s", "f").unwrap();
        let tar = b.into_inner().unwrap();
        let out = tempfile::tempfile().unwrap();
        crate::write_layer(&tar[..], &out, &crate::Options::default()).unwrap();
        let mut image = Vec::new();
        std::io::Read::read_to_end(&mut &out, &mut image).unwrap();
        image
    }

    #[test]
    fn accepts_what_we_write() {
        let census = verify(&image()).unwrap();
        assert_eq!((census.dirs, census.inodes, census.names), (2, 4, 3));
    }

    #[test]
    fn damaged_images_are_errors_not_panics() {
        let good = image();
        assert!(verify(&good[..4096]).is_err());
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let mut bad = good.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % bad.len() as u64) as usize;
                bad[at] = (state >> 32) as u8;
            }
            let _ = verify(&bad);
        }
    }
}
