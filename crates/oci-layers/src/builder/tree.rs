//! Tarring a directory tree as a layer: owners, modes, mtimes, symlinks, hardlinks, device
//! nodes, FIFOs and extended attributes (as PAX `SCHILY.xattr.*` records), in a deterministic
//! order (depth first, names sorted bytewise) so the same tree gives the same digest.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Largest xattr name list and value read (the kernel's own limit, `XATTR_SIZE_MAX`).
const XATTR_MAX: usize = 64 << 10;

/// Writes the tree under `root` (not `root` itself) as a tar stream into `out`.
pub fn write_tree<W: Write>(root: &Path, out: W) -> Result<W> {
    let mut tar = tar::Builder::new(out);
    let mut links = HashMap::new();
    walk(root, Path::new(""), &mut tar, &mut links)?;
    tar.into_inner()
        .map_err(|e| Error::io("writing layer tar of", root, e))
}

fn walk<W: Write>(
    dir: &Path,
    rel: &Path,
    tar: &mut tar::Builder<W>,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .map_err(|e| Error::io("reading directory", dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(|e| Error::io("reading directory", dir, e))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        let rel = rel.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(|e| Error::io("reading", &path, e))?;
        append_entry(tar, &path, &rel, &meta, links)?;
        if meta.is_dir() {
            walk(&path, &rel, tar, links)?;
        }
    }
    Ok(())
}

fn append_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    rel: &Path,
    meta: &Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let err = |e| Error::io("adding to layer tar", path, e);
    let mut header = tar::Header::new_gnu();
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(u64::from(meta.uid()));
    header.set_gid(u64::from(meta.gid()));
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    header.set_size(0);
    let kind = meta.file_type();

    if !kind.is_dir() && meta.nlink() > 1 {
        if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
            header.set_entry_type(tar::EntryType::Link);
            return tar.append_link(&mut header, rel, first).map_err(err);
        }
        links.insert((meta.dev(), meta.ino()), rel.to_path_buf());
    }
    write_xattrs(tar, path)?;
    if kind.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        tar.append_data(&mut header, rel, io::empty()).map_err(err)
    } else if kind.is_file() {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let data = Exact {
            inner: file,
            left: meta.len(),
        };
        tar.append_data(&mut header, rel, data).map_err(err)
    } else if kind.is_symlink() {
        header.set_entry_type(tar::EntryType::Symlink);
        let target = fs::read_link(path).map_err(|e| Error::io("reading link", path, e))?;
        tar.append_link(&mut header, rel, target).map_err(err)
    } else if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() {
        header.set_entry_type(if kind.is_char_device() {
            tar::EntryType::Char
        } else if kind.is_block_device() {
            tar::EntryType::Block
        } else {
            tar::EntryType::Fifo
        });
        if !kind.is_fifo() {
            header
                .set_device_major(rustix::fs::major(meta.rdev()))
                .and_then(|()| header.set_device_minor(rustix::fs::minor(meta.rdev())))
                .map_err(err)?;
        }
        tar.append_data(&mut header, rel, io::empty()).map_err(err)
    } else {
        // Sockets exist only while a process listens on them; images do not carry them.
        Ok(())
    }
}

/// Writes a PAX extended header with the xattrs of `path`, if it has any.
fn write_xattrs<W: Write>(tar: &mut tar::Builder<W>, path: &Path) -> Result<()> {
    let mut names = vec![0u8; XATTR_MAX];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        // Filesystems without xattr support have none to copy.
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(()),
        Err(e) => return Err(Error::io("listing xattrs of", path, e.into())),
    };
    let mut names: Vec<&[u8]> = names[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let mut records = Vec::new();
    let mut value = vec![0u8; XATTR_MAX];
    for name in names {
        let Ok(name_str) = std::str::from_utf8(name) else {
            continue; // PAX keys are UTF-8; such a name cannot be carried
        };
        let len = match rustix::fs::lgetxattr(path, name, &mut value[..]) {
            Ok(len) => len,
            // Removed between listing and reading.
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(Error::io("reading xattrs of", path, e.into())),
        };
        pax_record(
            &mut records,
            &format!("SCHILY.xattr.{name_str}"),
            &value[..len],
        );
    }
    if records.is_empty() {
        return Ok(());
    }
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_mode(0o644);
    header.set_size(records.len() as u64);
    header
        .set_path("PaxHeader")
        .map_err(|e| Error::io("adding xattrs of", path, e))?;
    header.set_cksum();
    tar.append(&header, &records[..])
        .map_err(|e| Error::io("adding xattrs of", path, e))
}

/// Appends one PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record
/// including its own digits.
pub(crate) fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Yields exactly `left` bytes of `inner`, failing if it ends early and stopping if it grows:
/// the tar header already promised that size.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being archived",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for value_len in [0usize, 1, 5, 6, 7, 85, 86, 87, 990, 995, 1000] {
            let mut out = Vec::new();
            let value = vec![b'v'; value_len];
            pax_record(&mut out, "SCHILY.xattr.user.k", &value);
            let digits: String = out
                .iter()
                .take_while(|b| **b != b' ')
                .map(|b| *b as char)
                .collect();
            assert_eq!(digits.parse::<usize>().unwrap(), out.len(), "{value_len}");
        }
    }
}
