//! A cgroup (v2) per jailed process, with memory and CPU limits, where this process may make
//! one: as root, under `<cgroup2 mount>/boxlite/`; otherwise beside its own cgroup, in the
//! subtree a service manager delegated to the user (systemd's `user@UID.service`).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// The controllers the limits need.
const CONTROLLERS: [&str; 2] = ["memory", "cpu"];
/// The directory under a root-owned cgroup2 mount that holds every jail's cgroup.
const ROOT_PARENT: &str = "boxlite";
/// How long removal waits for the last task of the cgroup to be gone (a killed process
/// leaves its cgroup a moment after `wait` returns on some kernels).
const REMOVE_PATIENCE: Duration = Duration::from_secs(2);
/// Pause between removal attempts.
const REMOVE_RETRY: Duration = Duration::from_millis(10);

/// The limits of one cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLimits {
    /// The cgroup's name (one path component, unique per jailed process).
    pub name: String,
    /// `memory.max`, in bytes.
    pub memory_max: u64,
    /// `cpu.max`: `(quota, period)` in microseconds.
    pub cpu_max: (u64, u64),
}

/// A cgroup made for one jailed process; [`Cgroup::remove`] it when the process is gone.
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes it, waiting a moment for its last task to leave.
    pub fn remove(self) -> Result<()> {
        let deadline = std::time::Instant::now() + REMOVE_PATIENCE;
        loop {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e)
                    if std::time::Instant::now() < deadline
                        && e.raw_os_error() == Some(libc::EBUSY) =>
                {
                    std::thread::sleep(REMOVE_RETRY);
                }
                Err(e) => return Err(Error::path("removing the cgroup", &self.dir)(e)),
            }
        }
    }
}

/// Where this process may make cgroups with the memory and CPU controllers, or why nowhere.
pub fn parent() -> std::result::Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    let mount = cgroup2_mount(&mountinfo).ok_or("no cgroup2 filesystem is mounted")?;
    let offered = read_words(&mount.join("cgroup.controllers"));
    let missing: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !offered.iter().any(|o| o == c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the cgroup v2 hierarchy at {} offers {}; {} {} bound to cgroup v1 here (a \
             hybrid or legacy setup)",
            mount.display(),
            if offered.is_empty() {
                "no controllers".to_string()
            } else {
                format!("only {}", offered.join(" "))
            },
            missing.join(" and "),
            if missing.len() == 1 { "is" } else { "are" },
        ));
    }
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(mount.join(ROOT_PARENT));
    }
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| own_cgroup(&s))
        .ok_or("this process is in no cgroup v2 group")?;
    let own = mount.join(own.trim_start_matches('/'));
    let parent = own.parent().unwrap_or(&mount).to_path_buf();
    if !writable(&parent) || !writable(&parent.join("cgroup.procs")) {
        return Err(format!(
            "no delegated cgroup: {} is not writable by this user (run as root, or in a \
             systemd user session whose manager delegates memory and cpu)",
            parent.display()
        ));
    }
    let enabled = read_words(&parent.join("cgroup.subtree_control"));
    if let Some(c) = CONTROLLERS
        .iter()
        .find(|c| !enabled.iter().any(|e| e == *c))
    {
        return Err(format!(
            "the delegated cgroup {} does not enable the {c} controller for its children",
            parent.display()
        ));
    }
    Ok(parent)
}

/// Makes (or takes over, after a crash) the cgroup `limits.name` under `parent` with the
/// limits, and opens its `cgroup.procs` for the child to join.
pub(crate) fn create(parent: &Path, limits: &CgroupLimits) -> Result<(Cgroup, OwnedFd)> {
    if limits.name.is_empty() || limits.name.contains('/') || limits.name.starts_with('.') {
        return Err(Error::Invalid(format!(
            "a cgroup name is one path component, not {:?}",
            limits.name
        )));
    }
    if !parent.exists() {
        std::fs::create_dir(parent).map_err(Error::path("creating the cgroup", parent))?;
    }
    // The parent distributes the controllers to its children (for the root case; a
    // delegated parent has them already, which `parent` checked).
    if let Some(grand) = parent.parent() {
        enable(grand)?;
    }
    enable(parent)?;
    let dir = parent.join(&limits.name);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::path("creating the cgroup", &dir)(e)),
    }
    let cgroup = Cgroup { dir };
    let write = |file: &str, value: String| {
        let path = cgroup.dir.join(file);
        std::fs::write(&path, value).map_err(Error::path("writing", path))
    };
    write("memory.max", limits.memory_max.to_string())?;
    write(
        "cpu.max",
        format!("{} {}", limits.cpu_max.0, limits.cpu_max.1),
    )?;
    let procs_path = cgroup.dir.join("cgroup.procs");
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(&procs_path)
        .map_err(Error::path("opening", &procs_path))?;
    Ok((cgroup, procs.into()))
}

/// Enables [`CONTROLLERS`] for the children of `dir` where they are not yet.
fn enable(dir: &Path) -> Result<()> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = read_words(&control);
    let wanted: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| !enabled.iter().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    std::fs::write(&control, wanted.join(" "))
        .map_err(Error::path("enabling controllers in", control))
}

fn read_words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) on a NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// The mount point of the cgroup2 filesystem in `mountinfo` (proc(5) format).
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount, rest) = line.split_once(" - ")?;
        if rest.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        mount.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// This process's cgroup v2 path (the `0::` line of /proc/self/cgroup).
fn own_cgroup(cgroups: &str) -> Option<String> {
    cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_and_own_group() {
        let hybrid = "25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
            26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:7 - \
            cgroup2 cgroup2 rw,nsdelegate\n\
            27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mount("25 24 0:22 / /sys ro - sysfs sysfs ro\n"),
            None
        );
        let own =
            "4:memory:/x\n0::/user.slice/user-1000.slice/user@1000.service/app.slice/a.scope\n";
        assert_eq!(
            own_cgroup(own).as_deref(),
            Some("/user.slice/user-1000.slice/user@1000.service/app.slice/a.scope")
        );
        assert_eq!(own_cgroup("4:memory:/x\n"), None);
    }

    #[test]
    fn this_host_says_where_or_why_not() {
        match parent() {
            Ok(dir) => assert!(dir.is_absolute(), "{}", dir.display()),
            Err(why) => assert!(!why.is_empty()),
        }
    }

    #[test]
    fn names_are_one_component() {
        let limits = CgroupLimits {
            name: "../x".into(),
            memory_max: 1,
            cpu_max: (1, 1),
        };
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            create(dir.path(), &limits),
            Err(Error::Invalid(_))
        ));
    }
}
