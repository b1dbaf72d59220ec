//! Where things live under the state directory.
//!
//! ```text
//! <home>/state.db                 boxes, base disks, their relations (SQLite)
//! <home>/images/ layers/ locks/   the image store and layer cache (oci-layers)
//! <home>/disks/<alg>/<hex>.erofs  read-only base disk of an image (by manifest digest)
//! <home>/boxes/<id prefix>/       one box: disk.ext4, console.log, box.sock,
//!                                 supervisor.lock, supervisor.log, vm.log
//! <home>/trash/                   removed boxes' directories, being deleted
//! <home>/locks/boxes.lock         held while box directories are made (shared) or swept
//! <home>/guest/                   default place of the guest kernel and initramfs
//! ```

use std::path::{Path, PathBuf};

use oci_layers::Digest;

/// How many hex digits of a box id name its directory: the box's Unix sockets live there, and
/// a socket path must fit in `sun_path` (108 bytes), which a full 64-digit id under a home
/// like `~/.local/share/boxlite` would not. 64 random bits still never collide in practice.
pub const BOX_DIR_ID_LEN: usize = 16;

/// The longest Unix socket path Linux accepts (`sun_path` less its terminating NUL).
pub const MAX_SOCKET_PATH_LEN: usize = 107;

/// The paths of one state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    home: PathBuf,
}

impl Layout {
    /// The layout of `home`.
    pub fn new(home: impl Into<PathBuf>) -> Layout {
        Layout { home: home.into() }
    }

    /// The state directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The SQLite database.
    pub fn state_db(&self) -> PathBuf {
        self.home.join("state.db")
    }

    /// Where base disks are kept.
    pub fn disks_dir(&self) -> PathBuf {
        self.home.join("disks")
    }

    /// The base disk of the image with manifest digest `digest`.
    pub fn base_disk(&self, digest: &Digest) -> PathBuf {
        self.disks_dir()
            .join(digest.algorithm().name())
            .join(format!("{}.erofs", digest.hex()))
    }

    /// Scratch space on the same filesystem as the disks (for build-then-rename).
    pub fn tmp_dir(&self) -> PathBuf {
        self.home.join("tmp")
    }

    /// Where all boxes' directories are.
    pub fn boxes_dir(&self) -> PathBuf {
        self.home.join("boxes")
    }

    /// Where removed boxes' directories wait to be deleted: on the same filesystem as
    /// [`Layout::boxes_dir`], so a box's directory leaves it in one rename.
    pub fn trash_dir(&self) -> PathBuf {
        self.home.join("trash")
    }

    /// The runtime's own lock files (beside the image store's).
    pub fn locks_dir(&self) -> PathBuf {
        self.home.join("locks")
    }

    /// Held shared while a box's directory is made and locked, exclusively while
    /// directories without a box are swept away.
    pub fn boxes_lock(&self) -> PathBuf {
        self.locks_dir().join("boxes.lock")
    }

    /// The default guest kernel and initramfs directory.
    pub fn guest_dir(&self) -> PathBuf {
        self.home.join("guest")
    }

    /// The files of box `id`, in a directory named by its first [`BOX_DIR_ID_LEN`] hex
    /// digits.
    pub fn box_dir(&self, id: &str) -> BoxPaths {
        let short = id.get(..BOX_DIR_ID_LEN).unwrap_or(id);
        BoxPaths {
            dir: self.boxes_dir().join(short),
        }
    }
}

/// The files of one box.
#[derive(Debug, Clone)]
pub struct BoxPaths {
    dir: PathBuf,
}

impl BoxPaths {
    /// The box's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The writable disk (sparse ext4 image).
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.ext4")
    }

    /// The guest's serial console output.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// The supervisor's socket, where any process talks to the box.
    pub fn box_socket(&self) -> PathBuf {
        self.dir.join("box.sock")
    }

    /// Held (flock, exclusive) by the live supervisor for its whole life.
    pub fn supervisor_lock(&self) -> PathBuf {
        self.dir.join("supervisor.lock")
    }

    /// The VM process's own messages (its stderr), from its last start.
    pub fn vm_log(&self) -> PathBuf {
        self.dir.join("vm.log")
    }

    /// The supervisor's own messages (its stderr).
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
}
