//! Copying files between the host and a box, as tar streams over the agent's transfers.
//!
//! Into the box, the host's files are trusted (they are the caller's own) and archived with
//! the `tar` crate. Out of the box, the archive comes from the guest and is hostile until
//! proven otherwise: it is unpacked with the agent's own unpacker (every lookup beneath the
//! destination with `RESOLVE_BENEATH`, capped metadata) into a fresh directory beside the
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

/// Copies `src` in the box to host `dest` (see [`LiteBox::copy_out`]).
pub(crate) async fn copy_out(client: &Client, src: &str, dest: &Path) -> Result<()> {
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
    let unpacker = std::thread::spawn(move || unpack_from_guest(&staged_in, read));
    let downloaded = client
        .download(src, tokio::fs::File::from_std(write))
        .await
        .map_err(|e| Error::protocol(format!("copying {src} out of the box"), e));
    let unpacked = unpacker
        .join()
        .map_err(|_| Error::Host("the unpacking thread panicked".into()))?;
    downloaded?;
    unpacked.map_err(|e| Error::Host(format!("copying {src} out of the box: {e}")))?;
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
        .map_err(|e| Error::io("moving the copy to", &final_path, e))
}

/// Unpacks a tar stream that came from a guest (hostile until proven otherwise) under the
/// existing directory `dir`: nothing is written outside it, whatever the stream holds.
pub fn unpack_from_guest(dir: &Path, input: impl std::io::Read) -> Result<()> {
    let root = guest::root::BoxRoot::open(dir, false)
        .map_err(|e| Error::Host(format!("unpacking into {}: {e}", dir.display())))?;
    guest::unpack::unpack(&root, "/", input)
        .map(|_| ())
        .map_err(|e| Error::Host(format!("unpacking into {}: {e}", dir.display())))
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
        let _ = std::fs::remove_dir_all(&self.path);
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
}
