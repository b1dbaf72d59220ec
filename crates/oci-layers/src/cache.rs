//! The per-layer extraction cache: every layer is extracted once, keyed by its diff_id, and
//! shared by all images that use it.
//!
//! Layout under `<home>/layers/`:
//!
//! - `<alg>/<hex>/rootfs/` — the extracted tree; `<alg>/<hex>/entries` — its explicit
//!   entries (whiteout markers included); `<alg>/<hex>/stamp` — the boot it was written in
//!   (see [`crate::durability`]). A directory here is always complete: it appears only by
//!   one atomic `rename` of a fully written staging directory, and one written without a
//!   sync in an earlier boot (whose data a crash may have lost) reads as absent.
//! - `tmp/<hex>.<pid>.<n>/` — staging (and trees being removed), owned by whoever holds the
//!   layer's lock; a later run removes those it can take the lock of.
//! - `locks/<hex>.lock` — the per-layer `flock`: one process extracts, others wait for it
//!   and then find the layer complete.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use whiteout::{EntryKind, LayerEntry};

use crate::digest::{Algorithm, Digest};
use crate::durability::Stamp;
use crate::error::{Error, Result};
use crate::extract::{
    DEFAULT_MAX_LAYER_BYTES, ExtractOptions, MAX_ENTRIES, extract_layer, remove_path,
};
use crate::lock::FileLock;
use crate::progress::Progress;
use crate::spec::Compression;

/// First line of an entry index; the version changes with the format.
const INDEX_MAGIC: &[u8] = b"boxlite layer entries v1\n";
/// Name of the entry index inside a layer's directory.
const INDEX_FILE: &str = "entries";
/// Name of the durability stamp inside a layer's directory.
const STAMP_FILE: &str = "stamp";
/// A stamp is a boot id and a flag; anything longer is not ours.
const MAX_STAMP_BYTES: u64 = 4096;
/// Name of the extracted tree inside a layer's directory.
const ROOTFS_DIR: &str = "rootfs";

/// Distinguishes staging directories made by one process.
static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// A layer present in the cache.
#[derive(Clone, Debug)]
pub struct CachedLayer {
    /// The layer's diff_id (digest of its uncompressed tar).
    pub diff_id: Digest,
    /// The extracted tree (`…/layers/<alg>/<hex>/rootfs`).
    pub root: PathBuf,
    /// The layer's explicit entries, whiteout markers included (last occurrence wins).
    pub entries: Vec<LayerEntry>,
}

/// Extracted layers under one image home, safe to share between threads and processes.
#[derive(Clone, Debug)]
pub struct LayerCache {
    dir: PathBuf,
    /// [`ExtractOptions::max_bytes`] of the layers this handle extracts.
    max_layer_bytes: u64,
}

impl LayerCache {
    /// Opens (creating) the cache under `home`, removing staging left by dead processes.
    pub fn open(home: &Path) -> Result<LayerCache> {
        let cache = LayerCache {
            dir: home.join("layers"),
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
        };
        for dir in [cache.tmp_dir(), cache.lock_dir()] {
            fs::create_dir_all(&dir).map_err(|e| Error::io("creating cache directory", &dir, e))?;
        }
        cache.clean_stale(None)?;
        Ok(cache)
    }

    /// This handle with the layers it extracts limited to `max_bytes` unpacked (see
    /// [`ExtractOptions::max_bytes`]; the default is [`DEFAULT_MAX_LAYER_BYTES`]). A layer
    /// over it fails and leaves nothing in the cache; layers cached before are not checked
    /// again.
    pub fn with_max_layer_bytes(mut self, max_bytes: u64) -> LayerCache {
        self.max_layer_bytes = max_bytes;
        self
    }

    /// The limit set by [`LayerCache::with_max_layer_bytes`].
    pub fn max_layer_bytes(&self) -> u64 {
        self.max_layer_bytes
    }

    /// Where the layer `diff_id` lives once cached (whether or not it is there).
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.dir
            .join(diff_id.algorithm().name())
            .join(diff_id.hex())
    }

    /// The layer `diff_id` if it is cached (and complete, which every cached layer is).
    pub fn lookup(&self, diff_id: &Digest) -> Result<Option<CachedLayer>> {
        let dir = self.layer_dir(diff_id);
        if !read_stamp(&dir.join(STAMP_FILE)).is_some_and(|stamp| stamp.trusted()) {
            return Ok(None);
        }
        let index = dir.join(INDEX_FILE);
        let bytes = match fs::read(&index) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading layer index", &index, e)),
        };
        let entries = parse_index(&bytes, diff_id).map_err(|why| {
            Error::Invalid(format!(
                "the cached layer index {} is corrupt ({why}); remove {} to extract it again",
                index.display(),
                dir.display()
            ))
        })?;
        Ok(Some(CachedLayer {
            diff_id: diff_id.clone(),
            root: dir.join(ROOTFS_DIR),
            entries,
        }))
    }

    /// The cached layer `diff_id`, extracting it first if needed.
    ///
    /// `open_blob` is called only if this call extracts; it returns the compressed blob and
    /// its compression. Concurrent callers (threads or processes) for the same layer wait
    /// for the one extracting. The extracted tree must have exactly `diff_id`, or nothing is
    /// cached and the error names `what` (e.g. "image foo layer 2/5 (sha256:…)").
    /// `progress` advances by the compressed bytes read.
    pub fn get_or_extract(
        &self,
        diff_id: &Digest,
        open_blob: impl FnOnce() -> Result<(Box<dyn Read + Send>, Compression)>,
        what: &str,
        progress: &Progress,
    ) -> Result<CachedLayer> {
        if let Some(layer) = self.lookup(diff_id)? {
            return Ok(layer);
        }
        let _lock = FileLock::exclusive(&self.lock_path(diff_id))?;
        if let Some(layer) = self.lookup(diff_id)? {
            return Ok(layer); // another process extracted it while we waited
        }
        self.clean_stale(Some(diff_id.hex()))?;
        let final_dir = self.layer_dir(diff_id);
        // Without an index it is not a cached layer: debris from outside our protocol.
        remove_path(&final_dir)
            .map_err(|e| Error::io("removing incomplete layer", &final_dir, e))?;
        let staging = self.staging_path(diff_id.hex(), "x");
        let result = self.fill(&staging, diff_id, open_blob, what, progress);
        let entries = match result {
            Ok(entries) => entries,
            Err(e) => {
                let _ = remove_path(&staging);
                return Err(e);
            }
        };
        let parent = self.dir.join(diff_id.algorithm().name());
        let publish = fs::create_dir_all(&parent)
            .and_then(|()| fs::rename(&staging, &final_dir))
            .and_then(|()| File::open(&parent)?.sync_all());
        if let Err(e) = publish {
            let _ = remove_path(&staging);
            return Err(Error::io("publishing extracted layer", &final_dir, e));
        }
        Ok(CachedLayer {
            diff_id: diff_id.clone(),
            root: final_dir.join(ROOTFS_DIR),
            entries,
        })
    }

    /// Extracts into `staging`, verifies the diff_id, writes the index and the stamp.
    fn fill(
        &self,
        staging: &Path,
        diff_id: &Digest,
        open_blob: impl FnOnce() -> Result<(Box<dyn Read + Send>, Compression)>,
        what: &str,
        progress: &Progress,
    ) -> Result<Vec<LayerEntry>> {
        let layer_err = |e: Error| Error::Layer {
            layer: what.to_string(),
            source: Box::new(e),
        };
        let rootfs = staging.join(ROOTFS_DIR);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(staging)
            .and_then(|()| fs::DirBuilder::new().mode(0o755).create(&rootfs))
            .map_err(|e| Error::io("creating staging directory", staging, e))?;
        let (blob, compression) = open_blob().map_err(layer_err)?;
        let reader = Counting {
            inner: blob,
            progress,
        };
        let opts = ExtractOptions {
            diff_id_algorithm: diff_id.algorithm(),
            max_bytes: self.max_layer_bytes,
            ..ExtractOptions::default()
        };
        let extracted = extract_layer(reader, compression, &rootfs, &opts).map_err(layer_err)?;
        if extracted.diff_id != *diff_id {
            return Err(Error::DigestMismatch {
                what: format!("{what} (uncompressed layer, diff_id)"),
                expected: diff_id.to_string(),
                actual: extracted.diff_id.to_string(),
            });
        }
        let index = staging.join(INDEX_FILE);
        write_index(&index, diff_id, &extracted.entries)
            .map_err(|e| Error::io("writing layer index", &index, e))?;
        // Stamped with this boot instead of synced: a crash before the data reaches the disk
        // means a new boot, in which this entry reads as absent and is extracted again.
        let stamp = Stamp::publish(&rootfs)?;
        let stamp_path = staging.join(STAMP_FILE);
        let json = serde_json::to_vec(&stamp)
            .map_err(|e| Error::Invalid(format!("serialising layer stamp: {e}")))?;
        fs::write(&stamp_path, json).map_err(|e| Error::io("writing", &stamp_path, e))?;
        Ok(extracted.entries)
    }

    /// Removes the layer `diff_id` from the cache; returns whether it was there.
    ///
    /// Callers must make sure no rootfs still uses it.
    pub fn remove(&self, diff_id: &Digest) -> Result<bool> {
        let _lock = FileLock::exclusive(&self.lock_path(diff_id))?;
        let dir = self.layer_dir(diff_id);
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(false);
        }
        // Unpublish atomically first, so no reader ever sees a half-removed layer.
        let doomed = self.staging_path(diff_id.hex(), "rm");
        fs::rename(&dir, &doomed).map_err(|e| Error::io("removing layer", &dir, e))?;
        remove_path(&doomed).map_err(|e| Error::io("removing layer", &doomed, e))?;
        Ok(true)
    }

    /// The diff_ids of all cached layers, sorted.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.dir.join(alg.name());
            let read = match fs::read_dir(&dir) {
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("listing layer cache", &dir, e)),
            };
            for item in read {
                let item = item.map_err(|e| Error::io("listing layer cache", &dir, e))?;
                let name = item.file_name();
                let Some(digest) = name
                    .to_str()
                    .and_then(|hex| format!("{}:{hex}", alg.name()).parse::<Digest>().ok())
                else {
                    continue;
                };
                if item.path().join(INDEX_FILE).is_file() {
                    out.push(digest);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn lock_dir(&self) -> PathBuf {
        self.dir.join("locks")
    }

    fn lock_path(&self, diff_id: &Digest) -> PathBuf {
        self.lock_dir().join(format!("{}.lock", diff_id.hex()))
    }

    fn staging_path(&self, hex: &str, kind: &str) -> PathBuf {
        let seq = STAGING_SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        self.tmp_dir().join(format!("{hex}.{kind}.{pid}.{seq}"))
    }

    /// Removes staging directories whose layer lock nobody holds (their owner died);
    /// only those of layer `hex` when given (the caller then holds that lock itself).
    fn clean_stale(&self, hex: Option<&str>) -> Result<()> {
        let tmp = self.tmp_dir();
        let read = fs::read_dir(&tmp).map_err(|e| Error::io("listing", &tmp, e))?;
        for item in read {
            let item = item.map_err(|e| Error::io("listing", &tmp, e))?;
            let name = item.file_name();
            let Some(owner) = staging_owner(&name) else {
                continue;
            };
            let path = item.path();
            let remove = || remove_path(&path).map_err(|e| Error::io("removing stale", &path, e));
            match hex {
                Some(hex) if hex == owner => remove()?,
                Some(_) => {}
                None => {
                    let lock = self.lock_dir().join(format!("{owner}.lock"));
                    if let Some(_held) = FileLock::try_exclusive(&lock)? {
                        remove()?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The layer hex a staging directory name belongs to, if it is one of ours.
fn staging_owner(name: &OsStr) -> Option<&str> {
    let name = name.to_str()?;
    let (hex, _) = name.split_once('.')?;
    let valid = matches!(hex.len(), 64 | 128) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some(hex)
}

/// Counts compressed bytes into a progress bar.
struct Counting<'a> {
    inner: Box<dyn Read + Send>,
    progress: &'a Progress,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// Writes the index: magic, diff_id line, count line, then per entry a kind byte (`d` or
/// `f`), the path bytes and a NUL (paths are raw bytes and never contain NUL).
fn write_index(path: &Path, diff_id: &Digest, entries: &[LayerEntry]) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    out.write_all(INDEX_MAGIC)?;
    writeln!(out, "{diff_id}")?;
    writeln!(out, "{}", entries.len())?;
    for entry in entries {
        out.write_all(match entry.kind {
            EntryKind::Dir => b"d",
            EntryKind::NonDir => b"f",
        })?;
        out.write_all(entry.path.as_os_str().as_bytes())?;
        out.write_all(b"\0")?;
    }
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()
}

/// Parses an index written by [`write_index`], checking it belongs to `diff_id`.
fn parse_index(bytes: &[u8], diff_id: &Digest) -> std::result::Result<Vec<LayerEntry>, String> {
    let rest = bytes.strip_prefix(INDEX_MAGIC).ok_or("unknown format")?;
    let mut lines = rest.splitn(3, |&b| b == b'\n');
    let (Some(id), Some(count), Some(records)) = (lines.next(), lines.next(), lines.next()) else {
        return Err("truncated header".into());
    };
    if id != diff_id.to_string().as_bytes() {
        return Err("it belongs to another layer".into());
    }
    let count: usize = std::str::from_utf8(count)
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c| c <= MAX_ENTRIES)
        .ok_or("bad entry count")?;
    let mut entries = Vec::with_capacity(count);
    let body = records.strip_suffix(b"\0").unwrap_or(records);
    if !records.is_empty() {
        for record in body.split(|&b| b == 0) {
            let (kind, path) = match record.split_first() {
                Some((b'd', path)) => (EntryKind::Dir, path),
                Some((b'f', path)) => (EntryKind::NonDir, path),
                _ => return Err("bad record".into()),
            };
            let normal = !path.is_empty()
                && !path.starts_with(b"/")
                && path
                    .split(|&b| b == b'/')
                    .all(|c| !matches!(c, b"" | b"." | b".."));
            if !normal {
                return Err("bad path".into());
            }
            entries.push(LayerEntry::new(OsStr::from_bytes(path), kind));
        }
    }
    if entries.len() != count || !records.is_empty() && !records.ends_with(b"\0") {
        return Err("entry count does not match".into());
    }
    Ok(entries)
}

/// The stamp at `path`, or `None` if it is missing or unreadable (an untrusted entry).
fn read_stamp(path: &Path) -> Option<Stamp> {
    let file = File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_STAMP_BYTES).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_raw_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let d = Digest::of(Algorithm::Sha256, b"x");
        let entries = vec![
            LayerEntry::dir("usr"),
            LayerEntry::non_dir(OsStr::from_bytes(b"usr/\xffodd\nname")),
            LayerEntry::non_dir("etc/.wh.gone"),
        ];
        let path = tmp.path().join("entries");
        write_index(&path, &d, &entries).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(parse_index(&bytes, &d).unwrap(), entries);
        write_index(&path, &d, &[]).unwrap();
        assert_eq!(parse_index(&fs::read(&path).unwrap(), &d).unwrap(), []);
        let other = Digest::of(Algorithm::Sha256, b"y");
        assert!(parse_index(&bytes, &other).is_err());
        for cut in [10, bytes.len() - 1, bytes.len() - 3] {
            assert!(parse_index(&bytes[..cut], &d).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn staging_names_are_recognised() {
        let hex = "a".repeat(64);
        assert_eq!(
            staging_owner(OsStr::new(&format!("{hex}.x.1.2"))),
            Some(&hex[..])
        );
        assert_eq!(staging_owner(OsStr::new("abc.x.1.2")), None);
        assert_eq!(staging_owner(OsStr::new(&hex)), None);
    }
}
