//! What an unpacking restores from the archive, and how much it accepts.

/// [`Policy::host`]'s cap on bytes of file content: 64 GiB.
///
/// A guest can send an endless stream; the cap bounds how much of the host's disk one
/// copy-out fills before it fails. It is far above a box's default disk (2 GiB), so only a
/// deliberately large copy meets it, and its caller can raise [`Policy::max_bytes`].
pub const HOST_MAX_BYTES: u64 = 64 << 30;

/// [`Policy::host`]'s cap on entries: 4 million.
///
/// Each entry costs the host an inode and a few syscalls for as little as 512 bytes of
/// stream, so a flood of empty files could exhaust the host filesystem's inodes long before
/// [`HOST_MAX_BYTES`]. Real trees, a root filesystem included, hold a few hundred thousand;
/// this is the image extractor's cap too.
pub const HOST_MAX_ENTRIES: u64 = 4_000_000;

/// What an unpacking restores from the archive, and how much of it it accepts.
///
/// Start from [`Policy::guest`] or [`Policy::host`] and change fields as needed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// Give entries the owner and group the archive records (needs `CAP_CHOWN`); otherwise
    /// everything is owned by the calling user.
    pub owners: bool,
    /// Keep setuid and setgid bits from the archive's modes; otherwise they are cleared.
    pub setid: bool,
    /// Create device nodes and FIFOs; otherwise they are skipped and named in the
    /// [`Report`](crate::Report).
    pub special_files: bool,
    /// Most bytes of file content accepted; past it, unpacking fails with
    /// [`Limit::Bytes`](crate::Limit::Bytes).
    pub max_bytes: u64,
    /// Most entries accepted, skipped ones included; past it, unpacking fails with
    /// [`Limit::Entries`](crate::Limit::Entries).
    pub max_entries: u64,
}

impl Policy {
    /// The box agent's upload: the stream is the box owner's own files, so everything is
    /// restored as `tar` would (owners when running as root, set-id bits, device nodes and
    /// FIFOs) and nothing is capped beyond the box's own disk.
    pub fn guest() -> Policy {
        Policy {
            owners: rustix::process::geteuid().is_root(),
            setid: true,
            special_files: true,
            max_bytes: u64::MAX,
            max_entries: u64::MAX,
        }
    }

    /// A stream a guest sent the host (`boxlite cp BOX:PATH DEST`): no device nodes or FIFOs
    /// (a guest must not get a device of the host opened, nor a FIFO that blocks a reader),
    /// no setuid or setgid bits (the copy must not become a way to run something with the
    /// host user's privileges), no owners (files belong to whoever copies), and at most
    /// [`HOST_MAX_BYTES`] and [`HOST_MAX_ENTRIES`].
    pub fn host() -> Policy {
        Policy {
            owners: false,
            setid: false,
            special_files: false,
            max_bytes: HOST_MAX_BYTES,
            max_entries: HOST_MAX_ENTRIES,
        }
    }

    /// The permission bits an entry gets for the archive's `mode`.
    pub(crate) fn mode(&self, mode: u32) -> u32 {
        let mode = mode & 0o7777;
        if self.setid { mode } else { mode & !0o6000 }
    }
}
