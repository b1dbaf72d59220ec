//! The content store: blobs named by digest under `<home>/images/blobs/<alg>/<hex>`.
//!
//! A blob is written to a unique temporary file in `<home>/images/tmp/`, hashed as it is
//! written, fsynced and only then renamed into place, so a blob path either does not exist or
//! holds exactly the bytes its name promises. Two writers of one blob both rename identical
//! bytes into place; rename is atomic, so readers never see a partial blob.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::digest::{Algorithm, Digest, HashingWriter};
use crate::error::{Error, Result};
use crate::extract::DEFAULT_MAX_LAYER_BYTES;
use crate::lock::FileLock;
use crate::progress::Progress;
use crate::spec::{MAX_BLOB_BYTES, parse_json};

/// Bytes copied per read while storing a blob.
const COPY_CHUNK: usize = 256 << 10;

/// A content-addressed blob store plus the image records kept beside it.
#[derive(Debug, Clone)]
pub struct Store {
    home: PathBuf,
    root: PathBuf,
    /// See [`Store::with_max_layer_bytes`].
    max_layer_bytes: u64,
}

impl Store {
    /// Opens (creating if needed) the store under `<home>/images/`.
    pub fn open(home: &Path) -> Result<Store> {
        let root = home.join("images");
        let store = Store {
            home: home.to_path_buf(),
            root,
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
        };
        for dir in [
            store.root.join("blobs").join(Algorithm::Sha256.name()),
            store.root.join("blobs").join(Algorithm::Sha512.name()),
            store.tmp_dir(),
            store.refs_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(|e| Error::io("creating directory", &dir, e))?;
        }
        Ok(store)
    }

    /// This store with the most bytes one layer may unpack to set to `max_bytes`, for the
    /// layers [`Store::unpack`] extracts (into the layer cache, or by its fallback).
    ///
    /// The default, [`DEFAULT_MAX_LAYER_BYTES`], refuses no real image; lower it to bound the
    /// disk a hostile image can fill, raise it for a trusted image with a larger layer.
    /// Layers already in the cache are not checked again.
    pub fn with_max_layer_bytes(mut self, max_bytes: u64) -> Store {
        self.max_layer_bytes = max_bytes;
        self
    }

    /// The most bytes one layer may unpack to; see [`Store::with_max_layer_bytes`].
    pub fn max_layer_bytes(&self) -> u64 {
        self.max_layer_bytes
    }

    /// The home directory the store was opened in.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The store's own directory, `<home>/images`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where temporary files of this store live (same filesystem as the blobs, for rename).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where image records live.
    pub(crate) fn refs_dir(&self) -> PathBuf {
        self.root.join("refs")
    }

    /// Takes the store lock shared: blobs and records present now stay while it is held.
    ///
    /// Imports and readers that must not lose blobs to garbage collection hold this.
    pub fn lock_shared(&self) -> Result<FileLock> {
        FileLock::shared(&self.root.join("lock"))
    }

    /// Takes the store lock exclusively, as removal and garbage collection do.
    pub fn lock_exclusive(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.root.join("lock"))
    }

    /// The path a blob with digest `digest` has (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// Whether the blob is in the store.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Stores the bytes of `reader` as blob `expected`, verifying digest and (if given) size
    /// while writing; returns the blob's size.
    ///
    /// If the blob is already stored, nothing is read and its size is returned. `what` names
    /// the blob in errors (e.g. "layer 2 of image.tar").
    pub fn put_blob(
        &self,
        reader: impl Read,
        expected: &Digest,
        expected_size: Option<u64>,
        what: &str,
        progress: &Progress,
    ) -> Result<u64> {
        if let Some(size) = expected_size {
            if size > MAX_BLOB_BYTES {
                return Err(Error::Invalid(format!(
                    "{what} claims {size} bytes; at most {MAX_BLOB_BYTES} are supported"
                )));
            }
        }
        let dest = self.blob_path(expected);
        if let Ok(meta) = fs::metadata(&dest) {
            check_size(what, expected_size, meta.len())?;
            return Ok(meta.len());
        }
        let (tmp, actual, size) =
            self.write_temp(reader, expected.algorithm(), expected_size, what, progress)?;
        check_size(what, expected_size, size)?;
        if actual != *expected {
            return Err(Error::DigestMismatch {
                what: what.to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        self.publish(tmp, &dest)?;
        Ok(size)
    }

    /// Stores the bytes of `reader` as a new blob whose digest is computed while writing
    /// (for formats that name blobs by path); returns its digest and size.
    pub fn put_blob_computing(
        &self,
        reader: impl Read,
        algorithm: Algorithm,
        what: &str,
        progress: &Progress,
    ) -> Result<(Digest, u64)> {
        let (tmp, digest, size) = self.write_temp(reader, algorithm, None, what, progress)?;
        let dest = self.blob_path(&digest);
        if dest.is_file() {
            // Already stored (and verified then); the temporary copy goes away on drop.
            return Ok((digest, size));
        }
        self.publish(tmp, &dest)?;
        Ok((digest, size))
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| Error::io("opening blob", path, e))
    }

    /// Reads a stored blob of at most `cap` bytes, re-verifying its digest.
    pub fn read_blob(&self, digest: &Digest, cap: u64, what: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        file.take(cap.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("reading blob", &path, e))?;
        if bytes.len() as u64 > cap {
            return Err(Error::Invalid(format!(
                "{what} (blob {digest}) is larger than {cap} bytes"
            )));
        }
        let actual = Digest::of(digest.algorithm(), &bytes);
        if actual != *digest {
            return Err(Error::DigestMismatch {
                what: format!(
                    "{what} (stored at {}; remove and re-import the image)",
                    path.display()
                ),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Reads and parses a stored JSON blob of at most `cap` bytes.
    pub fn read_blob_json<T: DeserializeOwned>(
        &self,
        digest: &Digest,
        cap: u64,
        what: &str,
    ) -> Result<T> {
        parse_json(&self.read_blob(digest, cap, what)?, what)
    }

    /// Every blob in the store.
    pub fn blobs(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(alg.name());
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("listing blobs in", dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("listing blobs in", &dir, e))?;
                let name = entry.file_name();
                // Anything that is not a digest-named file is not ours to track.
                if let Some(d) = name
                    .to_str()
                    .and_then(|n| format!("{}:{n}", alg.name()).parse::<Digest>().ok())
                {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a blob; callers hold the exclusive lock and know no image refers to it.
    pub(crate) fn remove_blob(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io("removing blob", path, e)),
        }
    }

    /// Removes leftovers of interrupted writes; callers hold the exclusive lock, so no write
    /// is in progress.
    pub(crate) fn clean_tmp(&self) -> Result<()> {
        let dir = self.tmp_dir();
        let entries = fs::read_dir(&dir).map_err(|e| Error::io("listing", &dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io("listing", &dir, e))?.path();
            let result = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing leftover", path, e)),
            }
        }
        Ok(())
    }

    /// Copies `reader` into a new temporary file, hashing it; stops with an error once it
    /// exceeds `expected_size` (or [`MAX_BLOB_BYTES`] when that is unknown).
    fn write_temp(
        &self,
        reader: impl Read,
        algorithm: Algorithm,
        expected_size: Option<u64>,
        what: &str,
        progress: &Progress,
    ) -> Result<(tempfile::NamedTempFile, Digest, u64)> {
        let tmp_dir = self.tmp_dir();
        let tmp = tempfile::Builder::new()
            .prefix(".blob-")
            .tempfile_in(&tmp_dir)
            .map_err(|e| Error::io("creating temporary file in", &tmp_dir, e))?;
        let limit = expected_size.unwrap_or(MAX_BLOB_BYTES);
        let mut writer = HashingWriter::new(tmp, algorithm);
        // One byte past the limit is read so that "too long" is told apart from "exactly right".
        let mut reader = reader.take(limit.saturating_add(1));
        let mut buf = vec![0u8; COPY_CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Invalid(format!("reading {what}: {e}"))),
            };
            writer
                .write_all(&buf[..n])
                .map_err(|e| Error::io("writing blob to", &tmp_dir, e))?;
            progress.inc(n as u64);
        }
        let size = writer.written();
        if size > limit {
            return Err(Error::Invalid(match expected_size {
                Some(n) => format!(
                    "size mismatch for {what}: its descriptor says {n} bytes, the blob has more"
                ),
                None => format!("{what} is larger than {limit} bytes"),
            }));
        }
        let (tmp, digest) = writer.finish();
        Ok((tmp, digest, size))
    }

    /// Makes a verified temporary file durable and renames it to `dest`.
    fn publish(&self, tmp: tempfile::NamedTempFile, dest: &Path) -> Result<()> {
        let file = tmp.as_file();
        file.set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(|e| Error::io("setting permissions of", tmp.path(), e))?;
        file.sync_all()
            .map_err(|e| Error::io("syncing", tmp.path(), e))?;
        tmp.persist(dest)
            .map_err(|e| Error::io("renaming blob into", dest, e.error))?;
        sync_parent(dest)
    }
}

/// Makes a rename into `path`'s directory durable.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", dir, e))
}

fn check_size(what: &str, expected: Option<u64>, actual: u64) -> Result<()> {
    match expected {
        Some(size) if size != actual => Err(Error::Invalid(format!(
            "size mismatch for {what}: its descriptor says {size} bytes, the blob has {actual}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
