//! Copying files between the host and a box, as tar streams over the agent's transfers.
//!
//! Into the box, the host's files are trusted (they are the caller's own) and archived with
//! the `tar` crate. Out of the box, the archive comes from the guest and is hostile until
//! proven otherwise: it is unpacked by `untar` with [`untar::Policy::host`] (every lookup
//! beneath the destination with `RESOLVE_BENEATH`, capped metadata, bytes and entries, no
//! device nodes, FIFOs, set-id bits or owners) into a fresh directory beside the
//! destination, and only its one expected top entry is moved into place.

use std::fs::File;
use std::path::{Path, PathBuf};

use protocol::client::Client;
use tokio::io::AsyncWrite;

use crate::error::{Error, Result};
use crate::litebox::LiteBox;

/// Copies host `src` to `dest` in the box (see [`LiteBox::copy_in`]).
pub(crate) async fn copy_in(client: &Client, _box: &LiteBox, src: &Path, dest: &str) -> Result<()> {
    check_box_path(dest)?;
    let meta = std::fs::symlink_metadata(src).map_err(|e| Error::io("copy from", src, e))?;
    let src_name = last_name(src)?;
    let (dir, name) = if dest.ends_with('/') || is_box_dir(client, dest).await {
        (dest.trim_end_matches('/').to_string(), src_name)
    } else {
        let (parent, name) = split_box_path(dest)?;
        (parent, name)
    };
    let dir = if dir.is_empty() { "/".to_string() } else { dir };
    let (read, write) = pipe()?;
    let src = src.to_path_buf();
    let packer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut builder = tar::Builder::new(write);
        builder.follow_symlinks(false);
        if meta.is_dir() {
            builder.append_dir_all(&name, &src)?;
        } else {
            builder.append_path_with_name(&src, &name)?;
        }
        builder.into_inner()?;
        Ok(())
    });
    let uploaded = client
        .upload(&dir, tokio::fs::File::from_std(read))
        .await
        .map_err(|e| Error::protocol(format!("copying into the box at {dir}"), e));
    let packed = packer
        .join()
        .map_err(|_| Error::Host("the archiving thread panicked".into()))?;
    uploaded?;
    packed.map_err(|e| Error::io("archiving for the copy", "the files", e))
}

/// What a copy out of a box did, and what it left out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyOutReport {
    /// Entries created on the host.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Device nodes and FIFOs the box sent, which are never created on the host.
    pub specials_skipped: u64,
    /// Where the first [`untar::MAX_REPORTED_NAMES`] of them would have been on the host.
    /// The names come from the box: quote them when printing.
    pub special_paths: Vec<PathBuf>,
}

/// How a copy out of a box treats what the box sends: bounded, and (unless asked) without
/// the box's owners.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyOutOptions {
    /// Most bytes of file content accepted (default [`untar::HOST_MAX_BYTES`]).
    pub max_bytes: u64,
    /// Most entries accepted (default [`untar::HOST_MAX_ENTRIES`]).
    pub max_entries: u64,
    /// Give the copies the owners the box recorded (needs root); by default they belong to
    /// the calling user.
    pub keep_owners: bool,
}

impl Default for CopyOutOptions {
    fn default() -> CopyOutOptions {
        let host = untar::Policy::host();
        CopyOutOptions {
            max_bytes: host.max_bytes,
            max_entries: host.max_entries,
            keep_owners: false,
        }
    }
}

impl CopyOutOptions {
    /// The unpacking policy: the host's, with these bounds and owners.
    fn policy(&self) -> untar::Policy {
        let mut policy = untar::Policy::host();
        policy.max_bytes = self.max_bytes;
        policy.max_entries = self.max_entries;
        policy.owners = self.keep_owners;
        policy
    }
}

/// Copies `src` in the box to host `dest` (see [`LiteBox::copy_out`]).
pub(crate) async fn copy_out(
    client: &Client,
    src: &str,
    dest: &Path,
    options: &CopyOutOptions,
) -> Result<CopyOutReport> {
    let policy = options.policy();
    check_box_path(src)?;
    let (_, name) = split_box_path(src)?;
    let (dir, final_path) = if dest.is_dir() {
        (dest.to_path_buf(), dest.join(&name))
    } else {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        (parent, dest.to_path_buf())
    };
    let staging = Staging::create(&dir)?;
    let (read, write) = pipe()?;
    let staged_in = staging.path().to_path_buf();
    let unpacker = std::thread::spawn(move || untar::unpack_into(&staged_in, read, &policy));
    let downloaded = client
        .download(src, tokio::fs::File::from_std(write))
        .await
        .map_err(|e| Error::protocol(format!("copying {src} out of the box"), e));
    let unpacked = unpacker
        .join()
        .map_err(|_| Error::Host("the unpacking thread panicked".into()))?;
    // An unpacker that refused the stream (a cap, an escape) stops reading it, and the
    // download then fails on the closed pipe: the refusal is the cause, so it comes first.
    // Any other download failure (the box went away) explains a truncated stream better.
    let reader_stopped = matches!(
        &downloaded,
        Err(Error::Protocol {
            source: protocol::Error::Io { source, .. },
            ..
        }) if source.kind() == std::io::ErrorKind::BrokenPipe
    );
    if !reader_stopped {
        downloaded?;
    }
    let unpacked = unpacked.map_err(|e| {
        Error::Host(format!(
            "copying {src} out of the box to {}: {e}",
            final_path.display()
        ))
    })?;
    let staged = staging.path().join(&name);
    if std::fs::symlink_metadata(&staged).is_err() {
        return Err(Error::Host(format!(
            "copying {src} out of the box: the box sent no entry named {name:?}"
        )));
    }
    if final_path.is_dir() && !staged.is_dir() {
        return Err(Error::InvalidInput(format!(
            "copy to {}: a directory is in the way of the file {name}",
            final_path.display()
        )));
    }
    if final_path.is_dir() {
        std::fs::remove_dir_all(&final_path).map_err(|e| Error::io("replacing", &final_path, e))?;
    }
    std::fs::rename(&staged, &final_path)
        .map_err(|e| Error::io("moving the copy to", &final_path, e))?;
    Ok(copy_out_report(unpacked, &name, &final_path))
}

/// Unpacks a tar stream that came from a guest (hostile until proven otherwise) under the
/// existing directory `dir` with [`untar::Policy::host`]: nothing is written outside it,
/// whatever the stream holds.
#[cfg(test)]
pub fn unpack_from_guest(dir: &Path, input: impl std::io::Read) -> Result<untar::Report> {
    untar::unpack_into(dir, input, &untar::Policy::host())
        .map_err(|e| Error::Host(format!("unpacking into {}: {e}", dir.display())))
}

/// The report of a copy whose staged top entry `name` became `final_path`: skipped special
/// files elsewhere in the staging directory were discarded with it, so they are not listed.
fn copy_out_report(unpacked: untar::Report, name: &str, final_path: &Path) -> CopyOutReport {
    let special_paths = unpacked
        .special_names
        .iter()
        .filter_map(|staged| {
            let rest = staged.strip_prefix(name)?;
            if rest.is_empty() {
                Some(final_path.to_path_buf())
            } else {
                Some(final_path.join(rest.strip_prefix('/')?))
            }
        })
        .collect();
    CopyOutReport {
        entries: unpacked.entries,
        bytes: unpacked.bytes,
        specials_skipped: unpacked.specials_skipped,
        special_paths,
    }
}

/// Whether `path` is a directory in the box: the first header of its download says, and the
/// rest of the transfer is cancelled.
async fn is_box_dir(client: &Client, path: &str) -> bool {
    let mut peek = Peek::default();
    let _ = client.download(path, &mut peek).await;
    peek.head.len() >= 512 && peek.head[156] == b'5'
}

/// Keeps the first tar header, then refuses more (which cancels the download).
#[derive(Default)]
struct Peek {
    head: Vec<u8>,
}

impl AsyncWrite for Peek {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let room = 512 - self.head.len();
        if room == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("seen enough")));
        }
        let n = room.min(buf.len());
        self.head.extend_from_slice(&buf[..n]);
        std::task::Poll::Ready(Ok(n))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A fresh directory beside the destination, removed when dropped.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn create(dir: &Path) -> Result<Staging> {
        let mut bytes = [0u8; 8];
        let _ = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty());
        let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!(".boxlite-cp-{suffix}"));
        std::fs::create_dir(&path).map_err(|e| Error::io("copy to", dir, e))?;
        Ok(Staging { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // A guest can send read-only directories: the removal makes them writable first.
        let _ = crate::disk::remove_tree(&self.path);
    }
}

fn pipe() -> Result<(File, File)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Error::io("creating a pipe for", "a copy", e.into()))?;
    Ok((File::from(read), File::from(write)))
}

fn check_box_path(path: &str) -> Result<()> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(Error::InvalidInput(format!(
            "box path {path:?}: must be absolute"
        )));
    }
    Ok(())
}

/// The parent directory and last name of an absolute box path.
fn split_box_path(path: &str) -> Result<(String, String)> {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((parent, name)) if !name.is_empty() && name != "." && name != ".." => Ok((
            if parent.is_empty() {
                "/".into()
            } else {
                parent.into()
            },
            name.into(),
        )),
        _ => Err(Error::InvalidInput(format!(
            "box path {path:?}: must end in a file or directory name"
        ))),
    }
}

fn last_name(path: &Path) -> Result<String> {
    let absolute = std::path::absolute(path).map_err(|e| Error::io("copy from", path, e))?;
    let name = absolute
        .components()
        .rfind(|c| !matches!(c, std::path::Component::CurDir))
        .and_then(|c| match c {
            std::path::Component::Normal(n) => n.to_str().map(str::to_string),
            _ => None,
        });
    name.ok_or_else(|| {
        Error::InvalidInput(format!(
            "copy from {}: name a file or directory (not / or ..)",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn box_paths_split_into_parent_and_name() {
        assert_eq!(
            split_box_path("/etc/hosts").unwrap(),
            ("/etc".into(), "hosts".into())
        );
        assert_eq!(split_box_path("/tmp/").unwrap(), ("/".into(), "tmp".into()));
        assert!(split_box_path("/").is_err());
        assert!(split_box_path("/a/..").is_err());
        assert!(check_box_path("relative").is_err());
    }

    #[test]
    fn unpack_from_guest_unpacks_a_valid_stream() {
        let dir = tempfile::tempdir().unwrap();
        let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/untar/plain.tar");
        let data = std::fs::read(seed).unwrap();
        let report = unpack_from_guest(dir.path(), data.as_slice()).unwrap();
        assert!(report.entries >= 2, "{report:?}");
        let file = std::fs::read_to_string(dir.path().join("name/file")).unwrap();
        assert_eq!(file, "hello");
        let err = unpack_from_guest(dir.path(), &[0x55; 4096][..]).unwrap_err();
        assert!(matches!(err, Error::Host(_)), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("unpacking into {}", dir.path().display())),
            "{err}"
        );
    }

    #[test]
    fn skipped_special_files_are_reported_where_they_would_have_been() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o644);
            h.set_size(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            tar.append_data(&mut h, path, std::io::empty()).unwrap();
        };
        add("dev/", tar::EntryType::Directory);
        add("dev/fifo", tar::EntryType::Fifo);
        add("dev/null", tar::EntryType::Char);
        add("other/fifo", tar::EntryType::Fifo);
        let data = tar.into_inner().unwrap();
        let unpacked = unpack_from_guest(dir.path(), data.as_slice()).unwrap();
        assert!(std::fs::symlink_metadata(dir.path().join("dev/fifo")).is_err());
        let report = copy_out_report(unpacked, "dev", Path::new("/host/copy"));
        assert_eq!(report.specials_skipped, 3);
        assert_eq!(
            report.special_paths,
            [Path::new("/host/copy/fifo"), Path::new("/host/copy/null")]
        );
    }

    /// Root ignores permissions; the test drops that privilege on a thread of its own
    /// (capabilities belong to threads), so it checks the same thing as root or not.
    #[test]
    fn staging_is_removed_even_when_the_guest_sent_read_only_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let staging = Staging::create(tmp.path()).unwrap();
        let path = staging.path().to_path_buf();
        std::fs::create_dir_all(path.join("name/ro/deeper")).unwrap();
        std::fs::write(path.join("name/ro/deeper/f"), "x").unwrap();
        std::fs::write(path.join("name/ro/f"), "x").unwrap();
        for (dir, mode) in [
            ("name/ro/deeper", 0o500),
            ("name/ro", 0o500),
            ("name", 0o000),
        ] {
            std::fs::set_permissions(path.join(dir), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
        std::thread::spawn(move || {
            use rustix::thread::CapabilitySet;
            let mut caps = rustix::thread::capabilities(None).unwrap();
            caps.effective
                .remove(CapabilitySet::DAC_OVERRIDE | CapabilitySet::DAC_READ_SEARCH);
            rustix::thread::set_capabilities(None, caps).unwrap();
            assert!(
                std::fs::remove_dir_all(&path).is_err(),
                "premise: remove_dir_all cannot empty a read-only directory"
            );
            drop(staging);
            assert!(
                std::fs::symlink_metadata(&path).is_err(),
                "staging left behind"
            );
        })
        .join()
        .unwrap();
    }
}
