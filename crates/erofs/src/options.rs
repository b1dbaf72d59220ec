//! What the caller chooses about an image, and what writing it did.

/// Default for [`Options::max_data_bytes`]: 64 GiB, the layer extractor's cap.
///
/// Real layers are megabytes to a few GiB, the largest (CUDA, ML frameworks) well below
/// 32 GiB; a few KiB of gzip can decompress to terabytes, which would fill the host's disk.
pub const DEFAULT_MAX_DATA_BYTES: u64 = 64 << 30;

/// How to write an image. Start from [`Options::default`] and change fields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Most bytes of file data accepted (replaced files included; for a merged image, all
    /// its layers together); past it, writing fails with
    /// [`Limit::DataBytes`](crate::Limit::DataBytes).
    pub max_data_bytes: u64,
    /// Modification time (seconds since the epoch) of directories the layer needs but does
    /// not list (and no earlier layer of a merged image made), of the root when no layer
    /// lists it, and of whiteouts.
    pub implied_mtime: i64,
    /// The superblock's build time (seconds since the epoch).
    pub build_time: i64,
    /// The volume's UUID.
    pub uuid: [u8; 16],
    /// The volume's name (at most 16 bytes are kept).
    pub volume_name: Vec<u8>,
}

impl Default for Options {
    /// Zero times, UUID and name, so equal streams give byte-identical images.
    fn default() -> Self {
        Options {
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            implied_mtime: 0,
            build_time: 0,
            uuid: [0; 16],
            volume_name: Vec::new(),
        }
    }
}

/// What writing an image did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Layers read: 1 for [`write_layer`](crate::write_layer).
    pub layers: u64,
    /// Tar entries read (PAX and GNU extension headers not counted).
    pub entries: u64,
    /// Regular file inodes in the image (a hard-linked file once).
    pub files: u64,
    /// Directories in the image, the root included.
    pub dirs: u64,
    /// Symlinks in the image.
    pub symlinks: u64,
    /// Device nodes and FIFOs in the image (whiteouts not counted).
    pub specials: u64,
    /// Names beyond the first of an inode (hard links).
    pub hard_links: u64,
    /// Whiteouts written (character devices 0:0); none in a merged image, which applies
    /// them.
    pub whiteouts: u64,
    /// Directories marked opaque; none in a merged image.
    pub opaque_dirs: u64,
    /// Entries left out: sockets, unknown types, AUFS metadata (`.wh..wh.*`).
    pub skipped: u64,
    /// Extended attributes left out: names EROFS cannot store (no namespace prefix it
    /// knows) and `trusted.overlay.*`, which only the layer's markers may set.
    pub skipped_xattrs: u64,
    /// Bytes of file data written, replaced files included.
    pub data_bytes: u64,
    /// Of [`Summary::data_bytes`], those no name of the image reaches: files a later entry
    /// replaced, or (in a merged image) a later layer replaced or whited out. They stay in
    /// the image as dead blocks, since data is written as it is read.
    pub dead_bytes: u64,
    /// Size of the image.
    pub image_bytes: u64,
}
