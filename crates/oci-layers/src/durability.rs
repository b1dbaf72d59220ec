//! Publishing without waiting for the disk, safely: records stamped with the boot they were
//! written in.
//!
//! A cache entry or rootfs is published by a rename after its contents are written. Within one
//! boot the page cache makes those contents visible to every reader, synced or not; only a
//! crash of the machine can lose them, and a crash means a new boot. So instead of an
//! `syncfs` on every publish (which on a 170 MB rootfs costs as much as writing it), a record
//! carries the id of the boot that wrote it: a record from this boot is trusted, one from an
//! earlier boot only if it was synced before that boot ended. Anything else reads as
//! incomplete and is redone. Where the kernel offers no boot id, publishing syncs first.

use std::fs::File;
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where Linux exposes a random id chosen afresh at every boot.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// When and how durably a record was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The boot the record was written in (empty when unknown).
    pub boot_id: String,
    /// Whether the record's contents were flushed to disk before it was published.
    pub synced: bool,
}

impl Stamp {
    /// Whether what this stamp describes can be trusted now.
    pub fn trusted(&self) -> bool {
        self.synced || boot_id().is_some_and(|id| id == self.boot_id)
    }

    /// Makes the contents under `dir` safe to publish and returns their stamp: without a sync
    /// when the boot id will tell a later boot not to trust them, with one otherwise.
    pub fn publish(dir: &Path) -> Result<Stamp> {
        match boot_id() {
            Some(id) => Ok(Stamp {
                boot_id: id.to_string(),
                synced: false,
            }),
            None => {
                sync_filesystem(dir)?;
                Ok(Stamp {
                    boot_id: String::new(),
                    synced: true,
                })
            }
        }
    }
}

/// The current boot's id, read once per process.
pub fn boot_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        std::fs::read_to_string(BOOT_ID_PATH)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// Flushes the whole filesystem holding `path` (one `syncfs`, cheaper than an fsync per file).
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    rustix::fs::syncfs(&file).map_err(|e| Error::io("syncing", path, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_boot_is_trusted_an_earlier_one_only_if_synced() {
        let here = Stamp::publish(Path::new("/")).unwrap();
        assert!(here.trusted());
        let earlier = Stamp {
            boot_id: "00000000-0000-0000-0000-000000000000".into(),
            synced: false,
        };
        assert!(!earlier.trusted());
        let earlier_synced = Stamp {
            synced: true,
            ..earlier
        };
        assert!(earlier_synced.trusted());
    }

    #[test]
    fn the_boot_id_is_read_from_the_kernel() {
        let id = boot_id().expect("Linux exposes a boot id");
        assert_eq!(id.len(), 36, "{id}");
    }
}
