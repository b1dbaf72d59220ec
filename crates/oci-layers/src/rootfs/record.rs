//! What a destination directory holds, recorded in extended attributes on the directory itself.
//!
//! Assembly marks the destination "partial" before it writes anything and replaces that with a
//! "complete" record naming the image only after every entry is written and synced, so a
//! destination left half-finished by a crash is never mistaken for a complete rootfs. Keeping
//! the record on the directory (not in a file inside it) keeps the rootfs exactly the image's.

use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::durability::Stamp;
use crate::error::{Error, Result};

/// Set while assembly is writing into the destination.
const PARTIAL_XATTR: &str = "user.boxlite.rootfs.partial";
/// Set, with a [`Record`] as JSON, once the destination holds a complete rootfs.
const COMPLETE_XATTR: &str = "user.boxlite.rootfs";
/// A record is a manifest digest and a few hundred diff_ids at most; more is not ours.
const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Which image a complete destination holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The manifest the rootfs was assembled from.
    pub manifest: Digest,
    /// The layers, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// A [`Record`] as stored: with the stamp that says whether its contents survived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    record: Record,
    stamp: Stamp,
}

/// What the destination directory holds before assembly starts.
#[derive(Debug, PartialEq, Eq)]
pub enum State {
    /// Missing or an empty directory: free to assemble into.
    Empty,
    /// A complete rootfs of the recorded image.
    Complete(Record),
    /// A rootfs that was being assembled when its process stopped, or one completed without a
    /// sync before the machine rebooted: to be cleared and redone.
    Partial,
    /// A non-empty directory boxlite did not assemble: never touched.
    Foreign,
}

/// Reads the state of `dest`.
pub fn state(dest: &Path) -> Result<State> {
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Empty),
        Err(e) => return Err(Error::io("reading", dest, e)),
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::Invalid(format!(
                "rootfs destination {} exists and is not a directory; remove it or choose another",
                dest.display()
            )));
        }
        Ok(_) => {}
    }
    if let Some(bytes) = get(dest, COMPLETE_XATTR)? {
        let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Invalid(format!(
                "rootfs destination {} has an unreadable completion record ({e}); remove it and unpack again",
                dest.display()
            ))
        })?;
        if !stored.stamp.trusted() {
            return Ok(State::Partial);
        }
        return Ok(State::Complete(stored.record));
    }
    if get(dest, PARTIAL_XATTR)?.is_some() {
        return Ok(State::Partial);
    }
    let mut entries = std::fs::read_dir(dest).map_err(|e| Error::io("listing", dest, e))?;
    Ok(if entries.next().is_none() {
        State::Empty
    } else {
        State::Foreign
    })
}

/// Marks `dest` as being written.
pub fn mark_partial(dest: &Path) -> Result<()> {
    set(dest, PARTIAL_XATTR, b"1")?;
    let _ = rustix::fs::removexattr(dest, COMPLETE_XATTR);
    Ok(())
}

/// Marks `dest` as complete with `record`, once everything in it is written.
pub fn mark_complete(dest: &Path, record: &Record) -> Result<()> {
    let stored = Stored {
        record: record.clone(),
        stamp: Stamp::publish(dest)?,
    };
    let json = serde_json::to_vec(&stored)
        .map_err(|e| Error::Invalid(format!("serialising rootfs record: {e}")))?;
    set(dest, COMPLETE_XATTR, &json)?;
    match rustix::fs::removexattr(dest, PARTIAL_XATTR) {
        Ok(()) | Err(Errno::NODATA) => Ok(()),
        Err(e) => Err(Error::io("clearing the partial mark of", dest, e.into())),
    }
}

fn set(dest: &Path, name: &str, value: &[u8]) -> Result<()> {
    rustix::fs::setxattr(dest, name, value, XattrFlags::empty()).map_err(|e| {
        if e == Errno::NOTSUP {
            Error::Invalid(format!(
                "rootfs destination {} is on a filesystem without user extended attributes, which \
                 boxlite needs to record what it assembled; choose a destination on ext4, xfs, btrfs or tmpfs",
                dest.display()
            ))
        } else {
            Error::io("recording rootfs state on", dest, e.into())
        }
    })
}

fn get(dest: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; MAX_RECORD_BYTES];
    match rustix::fs::getxattr(dest, name, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(Errno::NODATA) | Err(Errno::NOTSUP) => Ok(None),
        Err(Errno::RANGE) => Err(Error::Invalid(format!(
            "rootfs destination {} has an oversized {name} attribute; remove it and unpack again",
            dest.display()
        ))),
        Err(e) => Err(Error::io("reading rootfs state of", dest, e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_goes_from_empty_to_partial_to_complete() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("rootfs");
        assert_eq!(state(&dest).unwrap(), State::Empty);
        std::fs::create_dir(&dest).unwrap();
        assert_eq!(state(&dest).unwrap(), State::Empty);
        mark_partial(&dest).unwrap();
        std::fs::write(dest.join("half"), b"").unwrap();
        assert_eq!(state(&dest).unwrap(), State::Partial);
        let record = Record {
            manifest: Digest::of(crate::Algorithm::Sha256, b"m"),
            diff_ids: vec![Digest::of(crate::Algorithm::Sha256, b"l")],
        };
        mark_complete(&dest, &record).unwrap();
        assert_eq!(state(&dest).unwrap(), State::Complete(record.clone()));

        // The same record from an earlier boot, never synced: its data may be lost.
        let earlier = Stored {
            record,
            stamp: Stamp {
                boot_id: "00000000-0000-0000-0000-000000000000".into(),
                synced: false,
            },
        };
        set(
            &dest,
            COMPLETE_XATTR,
            &serde_json::to_vec(&earlier).unwrap(),
        )
        .unwrap();
        assert_eq!(state(&dest).unwrap(), State::Partial);
    }

    #[test]
    fn an_unmarked_non_empty_directory_is_foreign() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious"), b"data").unwrap();
        assert_eq!(state(dir.path()).unwrap(), State::Foreign);
    }

    #[test]
    fn a_file_is_not_a_destination() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let err = state(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
