//! The EROFS on-disk format (Linux `fs/erofs/erofs_fs.h`), as far as an uncompressed image
//! of 4 KiB blocks with extended inodes and inline xattrs needs it. All little-endian.

/// log2 of the block size. Only 4 KiB blocks mount on every guest page size we boot.
pub(crate) const BLOCK_BITS: u8 = 12;
/// The block size.
pub(crate) const BLOCK: u64 = 1 << BLOCK_BITS;
/// Where the superblock lives (room before it for boot sectors).
pub(crate) const SUPER_OFFSET: u64 = 1024;
/// The superblock's magic number.
const MAGIC: u32 = 0xE0F5_E1E2;
/// An extended (64-byte) inode; compact ones cannot hold a 32-bit owner or an mtime.
pub(crate) const INODE_SIZE: u64 = 64;
/// Inodes sit on 32-byte slots; a nid counts slots from the metadata area's start.
pub(crate) const SLOT: u64 = 32;
/// Size of one directory entry record.
pub(crate) const DIRENT_SIZE: u64 = 12;
/// Size of the inline xattr header (with no shared xattrs).
const XATTR_HEADER_SIZE: usize = 12;

/// Data layout: the data in whole blocks from `raw_blkaddr` on.
pub(crate) const FLAT_PLAIN: u8 = 0;
/// Data layout: whole blocks from `raw_blkaddr`, the last partial block right after the
/// inode and its xattrs (it must not cross a block boundary).
pub(crate) const FLAT_INLINE: u8 = 2;

/// File types of directory entries (the generic `FT_*` values).
pub(crate) mod ft {
    /// Regular file.
    pub const REG: u8 = 1;
    /// Directory.
    pub const DIR: u8 = 2;
    /// Character device.
    pub const CHR: u8 = 3;
    /// Block device.
    pub const BLK: u8 = 4;
    /// FIFO.
    pub const FIFO: u8 = 5;
    /// Symlink.
    pub const LNK: u8 = 7;
}

/// Xattr name indexes EROFS stores instead of a name's prefix, with that prefix; a name
/// with no matching prefix cannot be stored (kernel 6.1 has no custom prefixes).
const XATTR_PREFIXES: [(u8, &[u8], bool); 5] = [
    (1, b"user.", false),
    (2, b"system.posix_acl_access", true),
    (3, b"system.posix_acl_default", true),
    (4, b"trusted.", false),
    (6, b"security.", false),
];

/// The name index and stored suffix for the xattr `name`, if EROFS can store it.
pub(crate) fn xattr_index(name: &[u8]) -> Option<(u8, &[u8])> {
    XATTR_PREFIXES.iter().find_map(|&(index, prefix, whole)| {
        let rest = name.strip_prefix(prefix)?;
        let fits = if whole {
            rest.is_empty()
        } else {
            !rest.is_empty()
        };
        (fits && rest.len() <= usize::from(u8::MAX)).then_some((index, rest))
    })
}

/// One stored xattr: name index, name suffix, value.
pub(crate) type Xattr = (u8, Box<[u8]>, Box<[u8]>);

/// Bytes the inline xattr area of `xattrs` takes (0 for none).
pub(crate) fn xattr_size<'a>(xattrs: impl IntoIterator<Item = &'a Xattr>) -> usize {
    let mut size = 0;
    for (_, name, value) in xattrs {
        size += (4 + name.len() + value.len()).next_multiple_of(4);
    }
    if size == 0 {
        0
    } else {
        XATTR_HEADER_SIZE + size
    }
}

/// Appends the inline xattr area of `xattrs` to `out` (nothing for none).
pub(crate) fn encode_xattrs<'a>(
    xattrs: impl IntoIterator<Item = &'a Xattr> + Clone,
    out: &mut Vec<u8>,
) {
    if xattr_size(xattrs.clone()) == 0 {
        return;
    }
    // h_reserved (the newer name filter, unused), h_shared_count 0, h_reserved2.
    out.extend_from_slice(&[0; XATTR_HEADER_SIZE]);
    for (index, name, value) in xattrs {
        let start = out.len();
        // Caps on names and values keep both within their fields.
        out.push(name.len() as u8);
        out.push(*index);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(value);
        out.resize(start + (out.len() - start).next_multiple_of(4), 0);
    }
}

/// `i_xattr_icount` for an inline xattr area of `size` bytes: the header counts as one
/// 4-byte unit, so the kernel's `12 + 4 * (icount - 1)` gives `size` back.
pub(crate) fn xattr_icount(size: usize) -> u16 {
    if size == 0 {
        return 0;
    }
    ((size - XATTR_HEADER_SIZE) / 4 + 1) as u16
}

/// A device number as the kernel's `new_encode_dev` packs it (12-bit major, 20-bit minor).
pub(crate) fn encode_dev(major: u32, minor: u32) -> Option<u32> {
    (major < 1 << 12 && minor < 1 << 20)
        .then_some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// An extended inode.
pub(crate) struct Inode {
    /// [`FLAT_PLAIN`] or [`FLAT_INLINE`].
    pub layout: u8,
    /// Bytes of the inline xattr area.
    pub xattr_size: usize,
    /// File type and permission bits.
    pub mode: u16,
    /// Size of the data.
    pub size: u64,
    /// First data block, or the device number of a device.
    pub u: u32,
    /// Inode number for 32-bit `stat`.
    pub ino: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Links.
    pub nlink: u32,
}

impl Inode {
    /// Appends the 64 bytes of the inode to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Bit 0: extended inode; bits 1-3: data layout.
        let format: u16 = 1 | (u16::from(self.layout) << 1);
        out.extend_from_slice(&format.to_le_bytes());
        out.extend_from_slice(&xattr_icount(self.xattr_size).to_le_bytes());
        out.extend_from_slice(&self.mode.to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.u.to_le_bytes());
        out.extend_from_slice(&self.ino.to_le_bytes());
        out.extend_from_slice(&self.uid.to_le_bytes());
        out.extend_from_slice(&self.gid.to_le_bytes());
        out.extend_from_slice(&self.mtime.to_le_bytes());
        out.extend_from_slice(&self.mtime_nsec.to_le_bytes());
        out.extend_from_slice(&self.nlink.to_le_bytes());
        out.extend_from_slice(&[0; 16]);
    }
}

/// The superblock's variable fields.
pub(crate) struct Superblock<'a> {
    /// nid of the root directory.
    pub root_nid: u16,
    /// Inodes in the image.
    pub inos: u64,
    /// Build time, seconds.
    pub build_time: i64,
    /// Blocks in the image.
    pub blocks: u32,
    /// First block of the metadata area.
    pub meta_blkaddr: u32,
    /// Volume UUID.
    pub uuid: [u8; 16],
    /// Volume name (the first 16 bytes are kept).
    pub volume_name: &'a [u8],
}

impl Superblock<'_> {
    /// The 128 bytes of the superblock. No feature bits: no checksum, no compression.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // checksum, unused without SB_CHKSUM
        out.extend_from_slice(&0u32.to_le_bytes()); // feature_compat
        out.push(BLOCK_BITS);
        out.push(0); // sb_extslots
        out.extend_from_slice(&self.root_nid.to_le_bytes());
        out.extend_from_slice(&self.inos.to_le_bytes());
        out.extend_from_slice(&self.build_time.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // build_time_nsec
        out.extend_from_slice(&self.blocks.to_le_bytes());
        out.extend_from_slice(&self.meta_blkaddr.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // xattr_blkaddr: no shared xattrs
        out.extend_from_slice(&self.uuid);
        let mut name = [0u8; 16];
        let len = self.volume_name.len().min(16);
        name[..len].copy_from_slice(&self.volume_name[..len]);
        out.extend_from_slice(&name);
        out.extend_from_slice(&0u32.to_le_bytes()); // feature_incompat
        out.resize(128, 0);
        out
    }
}

/// One directory entry to write: name, nid, file type.
pub(crate) type Dirent<'a> = (&'a [u8], u64, u8);

/// Splits sorted names into directory blocks: the index of each block's first entry.
///
/// Each block holds its entries' 12-byte records, then their names, unterminated (a name
/// ends where the next begins, or at the first NUL or the block's end for the last one).
pub(crate) fn dir_blocks<'a>(names: impl Iterator<Item = &'a [u8]>) -> (Vec<usize>, u64) {
    let mut starts = Vec::new();
    let mut used = BLOCK;
    for (i, name) in names.enumerate() {
        let need = DIRENT_SIZE + name.len() as u64;
        if used + need > BLOCK {
            starts.push(i);
            used = 0;
        }
        used += need;
    }
    let size = (starts.len() as u64).saturating_sub(1) * BLOCK + used;
    (starts, size)
}

/// The content of a directory from its sorted entries: full blocks padded with zeros, the
/// last one as long as it is used.
pub(crate) fn dir_data(entries: &[Dirent<'_>]) -> Vec<u8> {
    let (starts, size) = dir_blocks(entries.iter().map(|e| e.0));
    let mut out = Vec::with_capacity(size as usize);
    for (b, &first) in starts.iter().enumerate() {
        let end = starts.get(b + 1).copied().unwrap_or(entries.len());
        let block = &entries[first..end];
        let base = out.len();
        let mut nameoff = block.len() as u64 * DIRENT_SIZE;
        for &(name, nid, ty) in block {
            out.extend_from_slice(&nid.to_le_bytes());
            // Below the block size, so it fits.
            out.extend_from_slice(&(nameoff as u16).to_le_bytes());
            out.push(ty);
            out.push(0);
            nameoff += name.len() as u64;
        }
        for &(name, _, _) in block {
            out.extend_from_slice(name);
        }
        if b + 1 < starts.len() {
            out.resize(base + BLOCK as usize, 0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_the_kernel_sizes() {
        let mut inode = Vec::new();
        Inode {
            layout: FLAT_INLINE,
            xattr_size: 28,
            mode: 0o40755,
            size: 1,
            u: 2,
            ino: 3,
            uid: 4,
            gid: 5,
            mtime: 6,
            mtime_nsec: 7,
            nlink: 8,
        }
        .encode(&mut inode);
        assert_eq!(inode.len(), 64);
        assert_eq!(&inode[..2], &[5, 0]);
        assert_eq!(xattr_icount(28), 5);
        let sb = Superblock {
            root_nid: 0,
            inos: 1,
            build_time: 0,
            blocks: 2,
            meta_blkaddr: 1,
            uuid: [0; 16],
            volume_name: b"a name longer than sixteen",
        };
        assert_eq!(sb.encode().len(), 128);
    }

    #[test]
    fn xattr_names_map_to_indexes() {
        assert_eq!(
            xattr_index(b"trusted.overlay.opaque"),
            Some((4, &b"overlay.opaque"[..]))
        );
        assert_eq!(
            xattr_index(b"security.capability"),
            Some((6, &b"capability"[..]))
        );
        assert_eq!(xattr_index(b"system.posix_acl_access"), Some((2, &b""[..])));
        assert_eq!(xattr_index(b"system.posix_acl_accessx"), None);
        assert_eq!(xattr_index(b"user."), None);
        assert_eq!(xattr_index(b"other.x"), None);
        let x: Vec<Xattr> = vec![(4, b"overlay.opaque"[..].into(), b"y"[..].into())];
        let mut body = Vec::new();
        encode_xattrs(&x, &mut body);
        assert_eq!(body.len(), xattr_size(&x));
        assert_eq!(body.len(), 12 + 20);
    }

    #[test]
    fn devices_encode_like_the_kernel() {
        assert_eq!(encode_dev(0, 0), Some(0));
        assert_eq!(encode_dev(1, 3), Some(0x103));
        assert_eq!(
            encode_dev(259, 0x12345),
            Some(0x45 | (259 << 8) | (0x12300 << 12))
        );
        assert_eq!(encode_dev(4096, 0), None);
    }

    #[test]
    fn directories_split_into_blocks() {
        let long = [b'n'; 255];
        let names: Vec<&[u8]> = (0..40).map(|_| &long[..]).collect();
        let (starts, size) = dir_blocks(names.iter().copied());
        // 267 bytes per entry: 15 fit in a block.
        assert_eq!(starts, [0, 15, 30]);
        assert_eq!(size, 2 * BLOCK + 10 * 267);
        let entries: Vec<Dirent<'_>> = names.iter().map(|n| (*n, 1, ft::REG)).collect();
        assert_eq!(dir_data(&entries).len() as u64, size);
    }
}
