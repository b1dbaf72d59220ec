//! Uploads: a tar stream unpacked under a directory of the box.
//!
//! The destination is resolved inside the box's root (symlinks as if the root were `/`) and
//! created if missing; the stream is then unpacked beneath it by the `untar` crate with
//! [`untar::Policy::guest`]: nothing is written outside the destination, owners are restored
//! when the agent runs as root, modes (set-id bits included) and modification times always,
//! device nodes and FIFOs are created. This module only maps `untar`'s errors onto the
//! agent's kinds, so the host sees the same protocol errors as before.

use std::io::Read;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::root::BoxRoot;

/// Unpacks the tar stream `input` under `dest` (a directory of the box, created if missing).
pub fn unpack(root: &BoxRoot, dest: &str, input: impl Read) -> Result<untar::Report> {
    let dest_fd = open_or_create_dest(root, dest)?;
    untar::unpack(&dest_fd, input, &untar::Policy::guest()).map_err(|e| upload_error(dest, e))
}

/// The agent's error for a failed upload: a malformed or escaping archive, or one past a
/// cap, is the request's fault ([`Error::Invalid`]); a filesystem failure is classified by
/// its errno as everywhere in the agent.
fn upload_error(dest: &str, e: untar::Error) -> Error {
    match e {
        untar::Error::Read(source) => Error::io("receiving the upload to", dest, source),
        untar::Error::Io { op, path, source } => {
            if source.raw_os_error() == Some(Errno::PERM.raw_os_error())
                && !rustix::process::geteuid().is_root()
            {
                return Error::Denied(format!(
                    "upload to {dest}: cannot {op} {path}: not permitted (the agent does not \
                     run as root)"
                ));
            }
            // untar's operation is not a `&'static str`; the message keeps its "cannot {op} {path}"
            // wording, after the destination as every upload error does.
            Error::io(
                "upload to",
                format_args!("{dest}: cannot {op} {path}"),
                source,
            )
        }
        e => Error::Invalid(format!("upload to {dest}: {e}")),
    }
}

fn open_or_create_dest(root: &BoxRoot, dest: &str) -> Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut prefix = String::new();
    for comp in dest.split('/').filter(|c| !c.is_empty() && *c != ".") {
        prefix.push('/');
        prefix.push_str(comp);
        match root.open_in(&prefix, flags, Mode::empty()) {
            Ok(_) => continue,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(dest_error(dest, "opening", &prefix, e)),
        }
        let parent = prefix.rsplit_once('/').map_or("", |(p, _)| p);
        let parent_fd = root
            .open_in(parent, flags, Mode::empty())
            .map_err(|e| dest_error(dest, "opening", parent, e))?;
        match rustix::fs::mkdirat(&parent_fd, comp, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(dest_error(dest, "creating", &prefix, e)),
        }
    }
    root.open_in(dest, flags, Mode::empty())
        .map_err(|e| dest_error(dest, "opening", dest, e))
}

fn dest_error(dest: &str, op: &'static str, at: &str, e: Errno) -> Error {
    match e {
        Errno::NOTDIR => Error::Invalid(format!(
            "upload destination {dest}: {at} exists in the box and is not a directory"
        )),
        e if at == dest => Error::io(
            op,
            format_args!("the upload destination {dest} in the box"),
            e.into(),
        ),
        e => Error::io(
            op,
            format_args!("{at} in the box (a parent of the upload destination {dest})"),
            e.into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ErrorKind;

    /// One regular file entry, as the host's `tar` would write it.
    fn archive(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512) + 1024, 0);
        out
    }

    fn setup() -> (tempfile::TempDir, BoxRoot) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("box")).unwrap();
        let root = BoxRoot::open(&tmp.path().join("box"), false).unwrap();
        (tmp, root)
    }

    #[test]
    fn the_destination_is_created_inside_the_box() {
        let (tmp, root) = setup();
        std::fs::create_dir(tmp.path().join("box/up")).unwrap();
        std::os::unix::fs::symlink("/up", tmp.path().join("box/link")).unwrap();
        let done = unpack(&root, "/link/here", archive("f", b"hi").as_slice()).unwrap();
        assert_eq!((done.entries, done.bytes), (1, 2));
        assert_eq!(
            std::fs::read(tmp.path().join("box/up/here/f")).unwrap(),
            b"hi"
        );
        std::fs::write(tmp.path().join("box/plainfile"), "").unwrap();
        let err = unpack(&root, "/plainfile/sub", archive("f", b"").as_slice()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn untar_errors_keep_the_agent_kinds() {
        let (_tmp, root) = setup();
        for (bytes, needle) in [
            (archive("../evil", b"x"), "../evil"),
            (vec![0x55; 4096], "not a valid tar"),
        ] {
            let err = unpack(&root, "/dest", bytes.as_slice()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
            assert!(err.to_string().starts_with("upload to /dest: "), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
        let err = upload_error(
            "/d",
            untar::Error::Limit {
                limit: untar::Limit::EntryMetadata,
                max: 1,
            },
        );
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        let err = upload_error("/d", untar::Error::io(untar::Op::Stat, "x", Errno::NOENT));
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        let err = upload_error("/d", untar::Error::io(untar::Op::Write, "x", Errno::IO));
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert!(err.to_string().contains("cannot write x"), "{err}");
        let err = upload_error(
            "/d",
            untar::Error::io(untar::Op::CreateFile, "x", Errno::ACCESS),
        );
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        let err = upload_error("/d", untar::Error::Read(std::io::Error::other("cut")));
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert!(err.to_string().contains("receiving the upload"), "{err}");
    }
}
