//! Where an image is imported from: a directory, or a tar archive read in place.
//!
//! A tar archive is indexed once (path → offset and size of each file's data); files are then
//! read with positioned reads, so entries can be visited in any order without unpacking — the
//! order matters because `docker save` writes `manifest.json` after the layers it lists.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::spec::{Compression, MAX_PATH_BYTES};

/// Most entries indexed in one archive: a `docker save` of many images has a few per layer,
/// and an OCI layout one per blob, so real archives stay in the thousands.
pub const MAX_ARCHIVE_ENTRIES: usize = 65_536;
/// Longest entry name or link target kept in the index. Image formats use short paths
/// (`blobs/sha512/<128 hex>` is the longest), and with [`MAX_ARCHIVE_ENTRIES`] this bounds the
/// index to a few tens of MiB whatever the archive holds.
const MAX_INDEXED_PATH_BYTES: usize = 512;
/// Most symlinks followed to resolve one path inside an archive (docker's newer format links
/// legacy paths to blobs, one hop).
const MAX_LINK_HOPS: usize = 8;

/// An image source: a directory tree or an indexed tar archive.
pub(crate) enum Source {
    Dir(PathBuf),
    Tar(TarSource),
}

pub(crate) struct TarSource {
    path: PathBuf,
    file: File,
    entries: HashMap<String, TarEntry>,
}

enum TarEntry {
    File { offset: u64, size: u64 },
    Symlink(String),
    Hardlink(String),
}

impl Source {
    /// Opens `path` as a directory or, for a file, indexes it as a tar archive.
    pub fn open(path: &Path) -> Result<Source> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("opening image", path, e))?;
        if meta.is_dir() {
            return Ok(Source::Dir(path.to_path_buf()));
        }
        let file = File::open(path).map_err(|e| Error::io("opening image", path, e))?;
        let mut head = [0u8; 4];
        let n = file
            .read_at(&mut head, 0)
            .map_err(|e| Error::io("reading image", path, e))?;
        match Compression::sniff(&head[..n]) {
            Compression::None => {}
            c => {
                return Err(Error::Invalid(format!(
                    "{} is a {c:?}-compressed file; decompress it first (gunzip / unzstd) and import the tar",
                    path.display()
                )));
            }
        }
        Ok(Source::Tar(TarSource::index(path, file, meta.len())?))
    }

    /// The source as a human would name it, for messages.
    pub fn describe(&self) -> String {
        match self {
            Source::Dir(p) => p.display().to_string(),
            Source::Tar(t) => t.path.display().to_string(),
        }
    }

    /// Whether a regular file (after links, in archives) exists at `rel`.
    pub fn exists(&self, rel: &str) -> bool {
        match self {
            Source::Dir(root) => normalize(rel).is_some_and(|r| root.join(r).is_file()),
            Source::Tar(t) => t.resolve(rel).is_ok(),
        }
    }

    /// Fails unless `rel` is a relative path that stays inside the source.
    pub fn check_path(&self, rel: &str) -> Result<()> {
        match normalize(rel) {
            Some(_) => Ok(()),
            None => Err(bad_path(rel, &self.describe())),
        }
    }

    /// Opens the file at `rel`; returns a reader and its size.
    pub fn open_file(&self, rel: &str) -> Result<(Box<dyn Read + Send + '_>, u64)> {
        match self {
            Source::Dir(root) => {
                let r = normalize(rel).ok_or_else(|| bad_path(rel, &root.display().to_string()))?;
                let path = root.join(r);
                let file = File::open(&path).map_err(|e| Error::io("opening", &path, e))?;
                let meta = file
                    .metadata()
                    .map_err(|e| Error::io("opening", &path, e))?;
                if !meta.is_file() {
                    return Err(Error::Invalid(format!(
                        "{} is not a regular file",
                        path.display()
                    )));
                }
                Ok((Box::new(file), meta.len()))
            }
            Source::Tar(t) => {
                let (offset, size) = t.resolve(rel)?;
                Ok((
                    Box::new(RangeReader {
                        file: &t.file,
                        pos: offset,
                        end: offset + size,
                    }),
                    size,
                ))
            }
        }
    }

    /// Reads the whole file at `rel`, refusing files over `cap` bytes.
    pub fn read_capped(&self, rel: &str, cap: u64, what: &str) -> Result<Vec<u8>> {
        let (reader, size) = self.open_file(rel)?;
        if size > cap {
            return Err(Error::Invalid(format!(
                "{what} ({rel} in {}) is {size} bytes; at most {cap} are accepted",
                self.describe()
            )));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader.take(cap + 1).read_to_end(&mut bytes).map_err(|e| {
            Error::Invalid(format!(
                "reading {what} ({rel} in {}): {e}",
                self.describe()
            ))
        })?;
        if bytes.len() as u64 > cap {
            return Err(Error::Invalid(format!(
                "{what} ({rel} in {}) is over {cap} bytes",
                self.describe()
            )));
        }
        Ok(bytes)
    }
}

impl TarSource {
    fn index(path: &Path, file: File, len: u64) -> Result<TarSource> {
        let shown = path.display().to_string();
        let broken = |e: io::Error| {
            Error::Invalid(format!(
                "reading archive {shown}: {e} (is it a complete tar archive?)"
            ))
        };
        let mut entries = HashMap::new();
        let mut archive = tar::Archive::new(&file);
        let mut count = 0usize;
        for entry in archive.entries_with_seek().map_err(broken)? {
            let entry = entry.map_err(broken)?;
            count += 1;
            if count > MAX_ARCHIVE_ENTRIES {
                return Err(Error::Invalid(format!(
                    "archive {shown} has more than {MAX_ARCHIVE_ENTRIES} entries; it is not an image archive"
                )));
            }
            let raw = entry.path().map_err(broken)?;
            let Some(name) = raw
                .to_str()
                .filter(|n| n.len() <= MAX_INDEXED_PATH_BYTES)
                .and_then(normalize)
            else {
                continue; // not a path an image format uses
            };
            let link = || -> Result<String> {
                let target = entry.link_name().map_err(broken)?.ok_or_else(|| {
                    Error::Invalid(format!("archive {shown}: link {name} has no target"))
                })?;
                let target = target.to_string_lossy();
                if target.len() > MAX_INDEXED_PATH_BYTES {
                    return Err(Error::Invalid(format!(
                        "archive {shown}: link {name} has a target over {MAX_INDEXED_PATH_BYTES} bytes"
                    )));
                }
                Ok(target.into_owned())
            };
            let value = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let offset = entry.raw_file_position();
                    let size = entry.size();
                    if offset.checked_add(size).is_none_or(|end| end > len) {
                        return Err(Error::Invalid(format!(
                            "archive {shown} is truncated: {name} extends past its end"
                        )));
                    }
                    TarEntry::File { offset, size }
                }
                tar::EntryType::Symlink => TarEntry::Symlink(link()?),
                tar::EntryType::Link => TarEntry::Hardlink(link()?),
                _ => continue,
            };
            // Later entries replace earlier ones, as when unpacking.
            entries.insert(name, value);
        }
        if entries.is_empty() {
            return Err(Error::Invalid(format!(
                "{shown} is not a tar archive or is empty; expected an OCI layout or `docker save` archive"
            )));
        }
        Ok(TarSource {
            path: path.to_path_buf(),
            file,
            entries,
        })
    }

    /// Offset and size of the data of the file at `rel`, following links inside the archive.
    fn resolve(&self, rel: &str) -> Result<(u64, u64)> {
        let shown = self.path.display();
        let mut name = normalize(rel).ok_or_else(|| bad_path(rel, &shown.to_string()))?;
        for _ in 0..=MAX_LINK_HOPS {
            let next = match self.entries.get(&name) {
                None => {
                    return Err(Error::Invalid(format!("{rel} is missing from {shown}")));
                }
                Some(TarEntry::File { offset, size }) => return Ok((*offset, *size)),
                Some(TarEntry::Hardlink(target)) => normalize(target),
                Some(TarEntry::Symlink(target)) => {
                    let parent = name.rsplit_once('/').map_or("", |(p, _)| p);
                    if target.starts_with('/') {
                        normalize(target)
                    } else {
                        normalize(&format!("{parent}/{target}"))
                    }
                }
            };
            name = next.ok_or_else(|| {
                Error::Invalid(format!("{rel} in {shown} links outside the archive"))
            })?;
        }
        Err(Error::Invalid(format!(
            "{rel} in {shown}: more than {MAX_LINK_HOPS} links to follow"
        )))
    }
}

/// Normalises a relative archive path: drops `.` and empty parts, resolves `..` without going
/// above the root, refuses absolute paths. `None` when it is not a usable path.
fn normalize(rel: &str) -> Option<String> {
    if rel.len() > MAX_PATH_BYTES {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(rel.trim_start_matches('/')).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

fn bad_path(rel: &str, source: &str) -> Error {
    Error::Invalid(format!(
        "{source} refers to {:?}, which is not a path inside it",
        crate::spec::truncate(rel)
    ))
}

/// Reads one byte range of a file with positioned reads.
struct RangeReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside this file (truncated?)",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize("./a/b").as_deref(), Some("a/b"));
        assert_eq!(normalize("a//b/").as_deref(), Some("a/b"));
        assert_eq!(normalize("a/../b").as_deref(), Some("b"));
        assert_eq!(normalize("/abs").as_deref(), Some("abs"));
        assert_eq!(normalize("../x"), None);
        assert_eq!(normalize("a/../../x"), None);
        assert_eq!(normalize("."), None);
        assert_eq!(normalize(""), None);
    }

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> (tempfile::TempDir, PathBuf) {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let bytes = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        b.append_link(&mut h, path, target).unwrap();
    }

    fn read(s: &Source, rel: &str) -> Result<Vec<u8>> {
        s.read_capped(rel, 1 << 20, "test file")
    }

    #[test]
    fn reads_tar_entries_in_any_order_and_follows_links() {
        let (_d, path) = archive(|b| {
            add(b, "./blobs/sha256/aa", b"blob");
            link(
                b,
                tar::EntryType::Symlink,
                "legacy/layer.tar",
                "../blobs/sha256/aa",
            );
            link(b, tar::EntryType::Link, "hard", "blobs/sha256/aa");
            link(b, tar::EntryType::Symlink, "escape", "../../etc/passwd");
            link(b, tar::EntryType::Symlink, "loop", "loop");
            add(b, "manifest.json", b"[]");
        });
        let s = Source::open(&path).unwrap();
        assert_eq!(read(&s, "manifest.json").unwrap(), b"[]");
        assert_eq!(read(&s, "blobs/sha256/aa").unwrap(), b"blob");
        assert_eq!(read(&s, "legacy/layer.tar").unwrap(), b"blob");
        assert_eq!(read(&s, "hard").unwrap(), b"blob");
        assert!(s.exists("legacy/layer.tar") && !s.exists("nope"));
        let err = read(&s, "escape").unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
        let err = read(&s, "loop").unwrap_err().to_string();
        assert!(err.contains("links to follow"), "{err}");
        let err = read(&s, "nope").unwrap_err().to_string();
        assert!(err.contains("nope is missing from"), "{err}");
        let err = s
            .read_capped("manifest.json", 1, "m")
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 1"), "{err}");
    }

    #[test]
    fn truncated_and_compressed_archives_are_refused() {
        let (_d, path) = archive(|b| add(b, "big", &vec![1u8; 10_000]));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..5000]).unwrap();
        let err = Source::open(&path).err().unwrap().to_string();
        assert!(err.contains("truncated"), "{err}");

        std::fs::write(&path, [0x1f, 0x8b, 8, 0, 0]).unwrap();
        let err = Source::open(&path).err().unwrap().to_string();
        assert!(err.contains("decompress"), "{err}");

        std::fs::write(&path, b"not a tar at all").unwrap();
        assert!(Source::open(&path).is_err());
    }

    #[test]
    fn directory_source_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let s = Source::open(dir.path()).unwrap();
        assert_eq!(read(&s, "./f").unwrap(), b"x");
        assert!(read(&s, "../f").is_err());
        assert!(!s.exists("../f"));
    }
}
