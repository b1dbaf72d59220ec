//! The box's root directory: where paths in requests are resolved and commands run.
//!
//! In the VM the root is the overlay the agent built and every execution is chrooted into it.
//! On the host (`--listen PATH --root DIR`) the same holds when the agent runs as root and
//! `DIR` is not `/`; otherwise (an unprivileged agent, or `DIR` = `/`) executions are not
//! chrooted: they run in the host's filesystem, commands are looked up in the host's `PATH`
//! directories, and only the working directory is taken relative to `DIR` (a `cwd` of `/work`
//! means `DIR/work`). Files — uploads, downloads, `/etc/passwd`, `/etc/group` — are always
//! resolved inside `DIR`, with symlinks resolved as if `DIR` were `/`, so a link in the box can
//! never lead the agent outside it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::users::{self, Identity, MAX_DB_FILE_LEN};

/// The `PATH` an execution gets when its request sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How often a lookup is retried when `openat2` reports a concurrent rename (`EAGAIN`).
const RESOLVE_RETRIES: usize = 16;

/// The box's root directory.
#[derive(Debug)]
pub struct BoxRoot {
    path: PathBuf,
    dir: OwnedFd,
    exec_dir: OwnedFd,
    chroot: bool,
}

impl BoxRoot {
    /// Opens `path` as the box's root; executions are chrooted into it when `chroot` is set.
    pub fn open(path: &Path, chroot: bool) -> Result<BoxRoot> {
        let open = |p: &Path| {
            rustix::fs::open(
                p,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io("opening the box root", p.display(), e.into()))
        };
        let dir = open(path)?;
        let exec_dir = if chroot {
            open(path)?
        } else {
            open(Path::new("/"))?
        };
        Ok(BoxRoot {
            path: path.to_owned(),
            dir,
            exec_dir,
            chroot,
        })
    }

    /// The root's path in the agent's own filesystem.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether executions are chrooted into the root.
    pub fn chroot(&self) -> bool {
        self.chroot
    }

    /// The root directory (an `O_PATH` descriptor).
    pub fn dir(&self) -> &OwnedFd {
        &self.dir
    }

    /// Opens `box_path` (absolute or relative to the root) inside the root, resolving every
    /// symlink as if the root were `/`.
    pub fn open_in(
        &self,
        box_path: &str,
        flags: OFlags,
        mode: Mode,
    ) -> rustix::io::Result<OwnedFd> {
        open_in_root(&self.dir, box_path, flags, mode)
    }

    /// Reads a small file of the box; `None` when it does not exist.
    pub fn read_file(&self, box_path: &str, max_len: u64) -> Result<Option<String>> {
        let fd = match self.open_in(box_path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    "opening",
                    format_args!("{box_path} in the box"),
                    e.into(),
                ));
            }
        };
        let mut file = std::fs::File::from(fd);
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, max_len + 1), &mut text)
            .map_err(|e| Error::io("reading", format_args!("{box_path} in the box"), e))?;
        if text.len() as u64 > max_len {
            return Err(Error::Invalid(format!(
                "{box_path} in the box is over {max_len} bytes; refusing to read it"
            )));
        }
        Ok(Some(String::from_utf8_lossy(&text).into_owned()))
    }

    /// Resolves a user spec against the box's `/etc/passwd` and `/etc/group`.
    pub fn identity(&self, spec: Option<&str>) -> Result<Identity> {
        let passwd = self
            .read_file("/etc/passwd", MAX_DB_FILE_LEN)?
            .unwrap_or_default();
        let group = self
            .read_file("/etc/group", MAX_DB_FILE_LEN)?
            .unwrap_or_default();
        users::resolve(
            spec,
            &users::parse_passwd(&passwd),
            &users::parse_group(&group),
        )
    }

    /// Finds the program an execution's `argv[0]` names: a name with a `/` is used as it is,
    /// any other is searched in `path_var`'s absolute directories for an executable file.
    pub fn find_command(&self, name: &str, path_var: &str) -> Result<String> {
        if name.is_empty() {
            return Err(Error::Invalid("argv[0] is empty".into()));
        }
        if name.contains('/') {
            return Ok(name.to_owned());
        }
        for dir in path_var.split(':').filter(|d| d.starts_with('/')) {
            let candidate = format!("{}/{name}", dir.trim_end_matches('/'));
            let Ok(fd) = open_in_root(
                &self.exec_dir,
                &candidate,
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            let Ok(stat) = rustix::fs::fstat(&fd) else {
                continue;
            };
            let mode = stat.st_mode;
            if mode & libc::S_IFMT == libc::S_IFREG && mode & 0o111 != 0 {
                return Ok(candidate);
            }
        }
        let place = if self.chroot {
            "in the box"
        } else {
            "on the host"
        };
        Err(Error::NotFound(format!(
            "command {name:?} not found {place}: no executable file of that name in \
             PATH={path_var}"
        )))
    }

    /// The working directory for an execution, checked to exist, as a path the child can
    /// `chdir` to (inside the root when chrooted, in the agent's filesystem otherwise).
    pub fn working_dir(&self, cwd: &str) -> Result<PathBuf> {
        self.open_in(
            cwd,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::NOENT | Errno::NOTDIR => Error::NotFound(format!(
                "working directory {cwd:?} does not exist in the box"
            )),
            e => Error::io(
                "opening the working directory",
                format_args!("{cwd:?}"),
                e.into(),
            ),
        })?;
        if self.chroot {
            Ok(Path::new("/").join(cwd))
        } else {
            Ok(self.path.join(cwd.trim_start_matches('/')))
        }
    }

    /// The descriptor a chrooting child `fchdir`s to before `chroot(".")`.
    pub fn chroot_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.chroot.then(|| self.dir.as_fd())
    }
}

/// `openat2` with `RESOLVE_IN_ROOT` below `root`, retrying on concurrent renames.
pub fn open_in_root(
    root: &OwnedFd,
    box_path: &str,
    flags: OFlags,
    mode: Mode,
) -> rustix::io::Result<OwnedFd> {
    let rel = box_path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            rel,
            flags,
            mode,
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < RESOLVE_RETRIES => tries += 1,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn resolves_inside_the_root_and_finds_commands() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(r.join("usr/bin/tool"), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(r.join("usr/bin/data"), "x").unwrap();
        symlink("/usr/bin", r.join("bin")).unwrap();
        // A link that would leave the root lands inside it instead.
        symlink("/../../../../etc", r.join("escape")).unwrap();
        std::fs::write(r.join("etc/passwd"), "alice:x:7:8::/home/a:/bin/sh\n").unwrap();

        let root = BoxRoot::open(r, true).unwrap();
        assert_eq!(
            root.find_command("tool", "/nope:/bin").unwrap(),
            "/bin/tool"
        );
        let err = root.find_command("data", "/usr/bin").unwrap_err();
        assert_eq!(err.kind(), protocol::ErrorKind::NotFound);
        assert!(err.to_string().contains("\"data\""), "{err}");
        assert_eq!(root.find_command("./x", "").unwrap(), "./x");
        let text = root.read_file("/escape/passwd", 100).unwrap().unwrap();
        assert!(text.starts_with("alice"));
        assert_eq!(root.identity(Some("alice")).unwrap().uid, 7);
        assert!(root.read_file("/etc/missing", 100).unwrap().is_none());
        assert_eq!(
            root.read_file("/etc/passwd", 3).unwrap_err().kind(),
            protocol::ErrorKind::Invalid
        );
        assert_eq!(root.working_dir("/usr").unwrap(), Path::new("/usr"));
        assert_eq!(
            root.working_dir("/nope").unwrap_err().kind(),
            protocol::ErrorKind::NotFound
        );

        let plain = BoxRoot::open(r, false).unwrap();
        assert_eq!(plain.working_dir("usr/bin").unwrap(), r.join("usr/bin"));
        assert!(
            plain
                .find_command("sh", DEFAULT_PATH)
                .unwrap()
                .ends_with("/sh")
        );
    }
}
