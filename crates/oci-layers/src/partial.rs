//! Resumable blob downloads: a blob arriving over the network is appended to a partial file
//! under `<home>/images/partial/`, hashed as it grows, and becomes a blob only once its size
//! and digest are exactly what its descriptor promised.
//!
//! The partial file outlives the process: after an interruption (or `kill -9`) the next
//! download re-hashes the bytes already there and asks only for the rest. It is never visible
//! as a blob: readers look in `blobs/`, and a partial is renamed there only when verified.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::lock::FileLock;
use crate::spec::MAX_BLOB_BYTES;
use crate::store::{Store, sync_parent};

/// Bytes read per step while re-hashing what a partial file already holds.
const REHASH_CHUNK: usize = 1 << 20;

/// A blob being downloaded: what is already on disk, and where the next bytes go.
///
/// Holds a lock, so two downloads of one blob (threads or processes) never write the same
/// partial file; the second waits and then finds the blob stored.
pub struct PartialBlob {
    store: Store,
    path: PathBuf,
    file: File,
    hasher: Hasher,
    len: u64,
    expected: Digest,
    size: u64,
    what: String,
    _lock: FileLock,
}

impl std::fmt::Debug for PartialBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialBlob")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Where partial downloads live (same filesystem as the blobs, for rename).
    pub fn partial_dir(&self) -> PathBuf {
        self.root().join("partial")
    }

    /// Opens (or resumes) the download of blob `expected` of `size` bytes; `what` names it in
    /// errors. `None` if the blob is already stored.
    pub fn partial_blob(
        &self,
        expected: &Digest,
        size: u64,
        what: &str,
    ) -> Result<Option<PartialBlob>> {
        if size > MAX_BLOB_BYTES {
            return Err(Error::Invalid(format!(
                "{what} claims {size} bytes; at most {MAX_BLOB_BYTES} are supported"
            )));
        }
        if self.has_blob(expected) {
            return Ok(None);
        }
        let dir = self.partial_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io("creating directory", &dir, e))?;
        let stem = format!("{}-{}", expected.algorithm().name(), expected.hex());
        let lock = FileLock::exclusive(&dir.join(format!("{stem}.lock")))?;
        if self.has_blob(expected) {
            return Ok(None); // another download finished while we waited
        }
        let path = dir.join(stem);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("opening partial download", &path, e))?;
        let mut hasher = Hasher::new(expected.algorithm());
        let len =
            rehash(&mut file, &mut hasher, size).map_err(|e| Error::io("reading", &path, e))?;
        let mut partial = PartialBlob {
            store: self.clone(),
            path,
            file,
            hasher,
            len,
            expected: expected.clone(),
            size,
            what: what.to_string(),
            _lock: lock,
        };
        if len > size {
            partial.restart()?; // longer than the blob can be: not a prefix of it
        }
        Ok(Some(partial))
    }

    /// Removes partial downloads of blobs that are stored now; callers hold the exclusive
    /// lock. Other partials stay: they are what a retried pull resumes from.
    pub(crate) fn clean_partials(&self) -> Result<()> {
        let dir = self.partial_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("listing", &dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| Error::io("listing", &dir, e))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let stem = name.strip_suffix(".lock").unwrap_or(name);
            let stored = stem
                .split_once('-')
                .and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok())
                .is_some_and(|d| self.has_blob(&d));
            if stored {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }
}

impl PartialBlob {
    /// Bytes already downloaded: where the next request should start (an HTTP `Range`).
    pub fn offset(&self) -> u64 {
        self.len
    }

    /// The size the finished blob must have.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The partial file, for error messages.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends the next bytes of the blob; refuses bytes past its announced size.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let after = self.len.saturating_add(bytes.len() as u64);
        if after > self.size {
            return Err(Error::Invalid(format!(
                "size mismatch for {}: its descriptor says {} bytes, the registry sent more",
                self.what, self.size
            )));
        }
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io("writing partial download", &self.path, e))?;
        self.hasher.update(bytes);
        self.len = after;
        Ok(())
    }

    /// Forgets what was downloaded (a server that ignored the range sends the whole blob).
    pub fn restart(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(drop))
            .map_err(|e| Error::io("truncating partial download", &self.path, e))?;
        self.hasher = Hasher::new(self.expected.algorithm());
        self.len = 0;
        Ok(())
    }

    /// Verifies size and digest, makes the bytes durable and publishes the blob; returns its
    /// size. On a mismatch the partial file is deleted, so a retry starts from scratch.
    pub fn finish(self) -> Result<u64> {
        if self.len != self.size {
            return Err(Error::Invalid(format!(
                "size mismatch for {}: its descriptor says {} bytes, the registry sent {}",
                self.what, self.size, self.len
            )));
        }
        let actual = self.hasher.clone().finish();
        if actual != self.expected {
            let _ = fs::remove_file(&self.path);
            return Err(Error::DigestMismatch {
                what: self.what.clone(),
                expected: self.expected.to_string(),
                actual: actual.to_string(),
            });
        }
        let dest = self.store.blob_path(&self.expected);
        self.file
            .set_permissions(fs::Permissions::from_mode(0o444))
            .and_then(|()| self.file.sync_all())
            .map_err(|e| Error::io("syncing", &self.path, e))?;
        fs::rename(&self.path, &dest).map_err(|e| Error::io("renaming blob into", &dest, e))?;
        sync_parent(&dest)?;
        Ok(self.size)
    }
}

/// Hashes the first bytes of `file` (at most `size + 1`, so "too long" shows) and leaves the
/// file position after them; returns how many there were.
fn rehash(file: &mut File, hasher: &mut Hasher, size: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; REHASH_CHUNK];
    let mut len = 0u64;
    let mut limited = (&mut *file).take(size.saturating_add(1));
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    file.seek(SeekFrom::Start(len))?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::digest::Algorithm;

    fn setup() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_download_resumes_from_what_is_on_disk() {
        let (_dir, store) = setup();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let digest = Digest::of(Algorithm::Sha256, &data);
        let size = data.len() as u64;
        let mut p = store.partial_blob(&digest, size, "blob").unwrap().unwrap();
        p.write(&data[..40_000]).unwrap();
        drop(p); // interrupted
        assert!(!store.has_blob(&digest));
        let mut p = store.partial_blob(&digest, size, "blob").unwrap().unwrap();
        assert_eq!(p.offset(), 40_000);
        p.write(&data[40_000..]).unwrap();
        assert_eq!(p.finish().unwrap(), size);
        assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), data);
        assert!(store.partial_blob(&digest, size, "blob").unwrap().is_none());
    }

    #[test]
    fn wrong_bytes_are_refused_and_forgotten() {
        let (_dir, store) = setup();
        let digest = Digest::of(Algorithm::Sha256, b"right");
        let mut p = store
            .partial_blob(&digest, 5, "layer 1/1")
            .unwrap()
            .unwrap();
        p.write(b"wrong").unwrap();
        let path = p.path().to_path_buf();
        let err = p.finish().unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains("layer 1/1"), "{err}");
        assert!(!store.has_blob(&digest));
        assert!(!path.exists());
    }

    #[test]
    fn bytes_past_the_size_are_refused() {
        let (_dir, store) = setup();
        let digest = Digest::of(Algorithm::Sha256, b"abc");
        let mut p = store.partial_blob(&digest, 3, "blob").unwrap().unwrap();
        assert!(p.write(b"abcd").is_err());
        p.write(b"ab").unwrap();
        assert!(p.finish().is_err()); // short
    }

    #[test]
    fn restart_discards_the_prefix() {
        let (_dir, store) = setup();
        let digest = Digest::of(Algorithm::Sha256, b"hello");
        let mut p = store.partial_blob(&digest, 5, "blob").unwrap().unwrap();
        p.write(b"he").unwrap();
        p.restart().unwrap();
        p.write(b"hello").unwrap();
        p.finish().unwrap();
        assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), b"hello");
    }
}
