//! Confines a child process before it runs, as Firecracker's jailer does for its VMM: a
//! [`Jail`] says what to apply, [`Jail::apply`] prepares it in the parent and arranges for the
//! child to apply it between `fork` and `execve` of a [`std::process::Command`], and the
//! [`Protections`] say which protections are active and why the others are not.
//!
//! Mechanism only: which paths, limits and ids a process gets is its caller's policy.
//!
//! What can be applied (each where the host allows it, else reported inactive with why):
//! - a clean environment (only the variables passed) and no inherited descriptors but 0, 1,
//!   2 and those passed ([`Jail::pass_fd`]);
//! - `PR_SET_NO_NEW_PRIVS` and resource limits ([`Resource`]);
//! - new mount, IPC, UTS, network (empty) and cgroup namespaces: directly as root, else in a
//!   new user namespace that maps the caller's ids to themselves;
//! - an unprivileged [`Identity`] (as root), owning what it was [`Jail::grant`]ed;
//! - Landlock rules ([`Access`]), with TCP denied and signals and abstract sockets scoped
//!   where the kernel's ABI has them;
//! - a cgroup v2 with `memory.max` and `cpu.max` ([`CgroupLimits`]), removed by
//!   [`Jailed::finish`].
//!
//! - a new PID namespace, with the namespaces: `unshare(CLONE_NEWPID)` moves only a process's
//!   children (and a process whose children's namespace is not its own cannot create
//!   threads), so the child stays between and forks the program as the namespace's PID 1;
//!   [`program_pid`] finds it.
//!
//! Seccomp filters are installed by the jailed program itself (they depend on the program), and
//! recorded with [`Protections::set`].

mod cgroup;
mod child;
mod error;
mod probe;
mod protections;
mod rules;

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use cgroup::{Cgroup, CgroupLimits};
pub use error::{Error, Result};
pub use protections::{
    CGROUP, DESCRIPTORS, ENVIRONMENT, IDENTITY, LANDLOCK, NAMESPACES, NO_NEW_PRIVS, PID_NAMESPACE,
    Protection, Protections, RLIMITS, SECCOMP,
};
pub use rules::{Access, abi_version as landlock_abi};

use child::{Prepared, UserMaps};

/// The most descriptors the close-on-exec fallback (kernels before 5.11) walks.
const MAX_FD_WALK: u64 = 65_536;
/// The mode bits a socket directory gets for the jail's group: write and search (to create
/// sockets), and sticky, so the group can remove only its own entries.
const SOCKET_DIR_BITS: u32 = 0o1030;

/// Who the jailed process runs as, when the jail starts as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
    /// Its supplementary groups (e.g. the group of /dev/kvm).
    pub groups: Vec<u32>,
}

/// How a path is made usable by the jail's [`Identity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Grant {
    /// A file the process writes: created empty if missing, then owned by the identity.
    File,
    /// A directory the process creates Unix sockets in: given to the identity's group with
    /// write, search and the sticky bit (it can remove only what it made).
    SocketDir,
    /// A file the process only reads, shared with other jails: if others may not read it,
    /// it is given to group `gid` (one of the identity's groups) with read permission.
    ReadableBy(u32),
}

/// A resource limit (soft and hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resource {
    /// `RLIMIT_CORE`: the largest core dump.
    Core,
    /// `RLIMIT_NOFILE`: one more than the highest descriptor number.
    NoFile,
    /// `RLIMIT_NPROC`: processes and threads of the real user. Applied only with an
    /// [`Identity`]: for the caller's own user it would count the caller's processes too.
    NProc,
}

impl Resource {
    fn raw(self) -> libc::c_int {
        (match self {
            Resource::Core => libc::RLIMIT_CORE,
            Resource::NoFile => libc::RLIMIT_NOFILE,
            Resource::NProc => libc::RLIMIT_NPROC,
        }) as libc::c_int
    }

    fn name(self) -> &'static str {
        match self {
            Resource::Core => "core",
            Resource::NoFile => "nofile",
            Resource::NProc => "nproc",
        }
    }
}

/// What to apply to one child process.
#[derive(Debug, Default)]
pub struct Jail {
    env: Vec<(OsString, OsString)>,
    fds: Vec<OwnedFd>,
    identity: Option<Identity>,
    grants: Vec<(PathBuf, Grant)>,
    namespaces: bool,
    rlimits: Vec<(Resource, u64)>,
    rules: Vec<(PathBuf, Access)>,
    cgroup: Option<CgroupLimits>,
    death_signal: Option<i32>,
    umask: Option<u32>,
}

/// A jail applied to a command: what is active, and the cgroup to remove when the process
/// has ended.
#[derive(Debug)]
pub struct Jailed {
    protections: Protections,
    cgroup: Option<Cgroup>,
}

impl Jailed {
    /// Which protections the process gets, and why the others not.
    pub fn protections(&self) -> &Protections {
        &self.protections
    }

    /// The report, for the caller to add what it knows (a seccomp filter the program
    /// installs, a reason of its own policy).
    pub fn protections_mut(&mut self) -> &mut Protections {
        &mut self.protections
    }

    /// The process's cgroup, if it has one.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// Cleans up after the process has ended (removes its cgroup).
    pub fn finish(self) -> Result<()> {
        self.cgroup.map_or(Ok(()), Cgroup::remove)
    }
}

impl Jail {
    /// A jail that applies only what every jail does: a clean environment, no inherited
    /// descriptors, and no new privileges.
    pub fn new() -> Jail {
        Jail::default()
    }

    /// Passes environment variable `key`.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Passes descriptor `fd`: the child has it open at the same number, which is returned.
    pub fn pass_fd(&mut self, fd: OwnedFd) -> RawFd {
        let raw = fd.as_raw_fd();
        self.fds.push(fd);
        raw
    }

    /// Runs the child as `identity` when the jail starts as root.
    pub fn identity(&mut self, identity: Identity) -> &mut Self {
        self.identity = Some(identity);
        self
    }

    /// Makes `path` usable by the identity (only when the identity applies).
    pub fn grant(&mut self, path: impl Into<PathBuf>, grant: Grant) -> &mut Self {
        self.grants.push((path.into(), grant));
        self
    }

    /// Asks for new mount, IPC, UTS, network and cgroup namespaces.
    pub fn namespaces(&mut self) -> &mut Self {
        self.namespaces = true;
        self
    }

    /// Limits `resource` to `limit`.
    pub fn rlimit(&mut self, resource: Resource, limit: u64) -> &mut Self {
        self.rlimits.push((resource, limit));
        self
    }

    /// Allows `access` beneath `path` under Landlock. The first rule turns Landlock on: from
    /// then on, only the paths allowed can be used.
    pub fn allow(&mut self, path: impl Into<PathBuf>, access: Access) -> &mut Self {
        self.rules.push((path.into(), access));
        self
    }

    /// Puts the child in a cgroup of its own with `limits`.
    pub fn cgroup(&mut self, limits: CgroupLimits) -> &mut Self {
        self.cgroup = Some(limits);
        self
    }

    /// Sends the child `signal` when the thread that spawned it ends.
    pub fn die_with_parent(&mut self, signal: i32) -> &mut Self {
        self.death_signal = Some(signal);
        self
    }

    /// Sets the child's umask.
    pub fn umask(&mut self, mode: u32) -> &mut Self {
        self.umask = Some(mode);
        self
    }

    /// Prepares the jail and arranges for `command`'s child to enter it before `execve`.
    /// What the host does not allow is left out and reported inactive.
    pub fn apply(self, command: &mut Command) -> Result<Jailed> {
        let mut protections = Protections::default();
        // SAFETY: getpid(2) cannot fail.
        let parent = unsafe { libc::getpid() };
        let mut prepared = Prepared {
            death_signal: self.death_signal,
            parent,
            max_fd: max_fd(),
            umask: self.umask.map(|m| m as libc::mode_t),
            ..Prepared::default()
        };

        command.env_clear();
        for (key, value) in &self.env {
            command.env(key, value);
        }
        protections.set(ENVIRONMENT, true, environment(self.env.len()));

        let identity = match (&self.identity, probe::is_root()) {
            (Some(id), true) => {
                for (path, grant) in &self.grants {
                    apply_grant(path, *grant, id)?;
                }
                prepared.identity = Some((id.uid, id.gid, id.groups.clone()));
                protections.set(IDENTITY, true, describe_identity(id));
                true
            }
            (Some(_), false) => {
                protections.set(IDENTITY, false, not_root());
                false
            }
            (None, _) => {
                protections.set(IDENTITY, false, "not asked for");
                false
            }
        };

        if self.namespaces {
            match probe::namespaces() {
                Ok(user) => {
                    prepared.unshare = probe::NAMESPACES;
                    prepared.private_mounts = true;
                    if user {
                        // SAFETY: getuid(2) and getgid(2) cannot fail.
                        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
                        prepared.user_maps = Some(UserMaps {
                            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
                            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
                        });
                    }
                    protections.set(NAMESPACES, true, describe_namespaces(user));
                    prepared.pid_namespace = true;
                    protections.set(PID_NAMESPACE, true, PID_NAMESPACE_USED);
                }
                Err(why) => protections.set(NAMESPACES, false, why),
            }
        } else {
            protections.set(NAMESPACES, false, "not asked for");
            protections.set(PID_NAMESPACE, false, "not asked for");
        }

        protections.set(
            NO_NEW_PRIVS,
            true,
            "PR_SET_NO_NEW_PRIVS: execve grants no set-uid, set-gid or file capabilities",
        );

        let mut limits = Vec::new();
        for &(resource, limit) in &self.rlimits {
            if resource == Resource::NProc && !identity {
                limits.push(format!("{} not limited (no own user)", resource.name()));
                continue;
            }
            prepared.rlimits.push((resource.raw(), limit));
            limits.push(format!("{} {limit}", resource.name()));
        }
        protections.set(
            RLIMITS,
            !prepared.rlimits.is_empty(),
            if limits.is_empty() {
                "none asked for".to_string()
            } else {
                limits.join(", ")
            },
        );

        if self.rules.is_empty() {
            protections.set(LANDLOCK, false, "no rules asked for");
        } else {
            match rules::abi_version() {
                0 => protections.set(LANDLOCK, false, NO_LANDLOCK),
                abi => match rules::build(&self.rules)? {
                    Some((fd, rules)) => {
                        prepared.landlock = Some(fd);
                        protections.set(LANDLOCK, true, rules::describe(abi, rules));
                    }
                    None => protections.set(LANDLOCK, false, NO_LANDLOCK),
                },
            }
        }

        let mut made = None;
        match &self.cgroup {
            None => protections.set(CGROUP, false, "not asked for"),
            Some(limits) => match cgroup::parent() {
                Err(why) => protections.set(CGROUP, false, why),
                Ok(parent) => match cgroup::create(&parent, limits) {
                    Ok((cgroup, procs)) => {
                        prepared.cgroup_procs = Some(procs);
                        protections.set(CGROUP, true, describe_cgroup(&cgroup, limits));
                        made = Some(cgroup);
                    }
                    Err(e) => protections.set(CGROUP, false, e.to_string()),
                },
            },
        }

        let passed = self.fds.len();
        prepared.keep = self.fds;
        protections.set(
            DESCRIPTORS,
            true,
            format!(
                "only 0-2 and {passed} passed descriptor(s) survive execve (the rest are \
                 marked close-on-exec)"
            ),
        );

        // SAFETY: the closure only makes system calls on values prepared above (see
        // `child.rs`): it allocates nothing and takes no locks, as a child forked from a
        // multi-threaded parent must.
        unsafe {
            command.pre_exec(move || prepared.apply_in_child());
        }
        Ok(Jailed {
            protections,
            cgroup: made,
        })
    }
}

/// What a jail with an identity, namespaces, rlimits, Landlock rules and a cgroup would get
/// on this host (seccomp: whether the kernel has filters; the program installs them).
pub fn host() -> Protections {
    let mut p = Protections::default();
    p.set(ENVIRONMENT, true, "emptied but for what the caller passes");
    p.set(
        IDENTITY,
        probe::is_root(),
        if probe::is_root() {
            "as root, the process runs as an unprivileged user of its own".to_string()
        } else {
            not_root()
        },
    );
    match probe::namespaces() {
        Ok(user) => {
            p.set(NAMESPACES, true, describe_namespaces(user));
            p.set(PID_NAMESPACE, true, PID_NAMESPACE_USED);
        }
        Err(why) => {
            p.set(PID_NAMESPACE, false, why.clone());
            p.set(NAMESPACES, false, why);
        }
    }
    p.set(NO_NEW_PRIVS, true, "PR_SET_NO_NEW_PRIVS before execve");
    p.set(
        RLIMITS,
        true,
        if probe::is_root() {
            "core dumps off; descriptors and threads bounded"
        } else {
            "core dumps off; descriptors bounded (threads only with an own user)"
        },
    );
    match rules::abi_version() {
        0 => p.set(LANDLOCK, false, NO_LANDLOCK),
        abi => p.set(
            LANDLOCK,
            true,
            rules::describe(abi, 0).replace(" to 0 path rule(s)", ""),
        ),
    }
    match cgroup::parent() {
        Ok(dir) => p.set(
            CGROUP,
            true,
            format!(
                "one per process under {} (memory.max, cpu.max)",
                dir.display()
            ),
        ),
        Err(why) => p.set(CGROUP, false, why),
    }
    p.set(
        DESCRIPTORS,
        true,
        "only 0-2 and the descriptors passed survive execve",
    );
    match probe::seccomp() {
        Ok(()) => p.set(SECCOMP, true, "the kernel has seccomp filters"),
        Err(why) => p.set(SECCOMP, false, why),
    }
    p
}

/// How the PID namespace is made.
const PID_NAMESPACE_USED: &str = "the program is PID 1 of a PID namespace of its own (it sees \
    and can signal no other process); a process between, which the spawner sees, waits for \
    it and ends as it does";

/// The PID, in the caller's namespace, of the program the jail started as `child` (the
/// process between, when the program runs in a PID namespace of its own; else `child`).
pub fn program_pid(child: u32) -> u32 {
    let path = format!("/proc/{child}/task/{child}/children");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(child)
}

/// Why Landlock is off.
const NO_LANDLOCK: &str = "the kernel has no Landlock (not built in, or not in the boot's \
    lsm= list)";

fn not_root() -> String {
    // SAFETY: getuid(2) cannot fail.
    let uid = unsafe { libc::getuid() };
    format!("runs as the caller (uid {uid}): only root can switch to another user")
}

fn environment(passed: usize) -> String {
    if passed == 0 {
        "emptied: the process gets no environment variables".into()
    } else {
        format!("emptied but for {passed} variable(s)")
    }
}

fn describe_identity(id: &Identity) -> String {
    let mut s = format!("uid {} gid {}", id.uid, id.gid);
    if !id.groups.is_empty() {
        let groups: Vec<String> = id.groups.iter().map(u32::to_string).collect();
        s.push_str(&format!(" groups {}", groups.join(",")));
    }
    s
}

fn describe_namespaces(user: bool) -> String {
    let mut s =
        String::from("new mount (private), IPC, UTS, network (empty) and cgroup namespaces");
    if user {
        s.push_str(", inside a new user namespace mapping the caller's uid and gid to themselves");
    }
    s
}

fn describe_cgroup(cgroup: &Cgroup, limits: &CgroupLimits) -> String {
    format!(
        "{}: memory.max {} MiB, cpu.max {} {}",
        cgroup.dir().display(),
        limits.memory_max >> 20,
        limits.cpu_max.0,
        limits.cpu_max.1
    )
}

/// Makes `path` usable by `id` as `grant` says.
fn apply_grant(path: &Path, grant: Grant, id: &Identity) -> Result<()> {
    match grant {
        Grant::File => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(Error::path("opening", path))?;
            std::os::unix::fs::fchown(&file, Some(id.uid), Some(id.gid))
                .map_err(Error::path("giving the jail", path))
        }
        Grant::SocketDir => {
            std::os::unix::fs::chown(path, None, Some(id.gid))
                .map_err(Error::path("giving the jail's group", path))?;
            let mode = std::fs::metadata(path)
                .map_err(Error::path("reading", path))?
                .permissions()
                .mode();
            std::fs::set_permissions(
                path,
                std::fs::Permissions::from_mode((mode & 0o7777) | SOCKET_DIR_BITS),
            )
            .map_err(Error::path("opening to the jail's group", path))
        }
        Grant::ReadableBy(gid) => {
            let mode = std::fs::metadata(path)
                .map_err(Error::path("reading", path))?
                .permissions()
                .mode();
            if mode & 0o004 != 0 {
                return Ok(());
            }
            std::os::unix::fs::chown(path, None, Some(gid))
                .map_err(Error::path("giving the jails' group", path))?;
            std::fs::set_permissions(
                path,
                std::fs::Permissions::from_mode((mode & 0o7777) | 0o040),
            )
            .map_err(Error::path("opening to the jails' group", path))
        }
    }
}

/// The highest descriptor the close-on-exec fallback walks: the descriptor limit, bounded.
fn max_fd() -> RawFd {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) into a valid struct.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let highest = if rc == 0 { limit.rlim_cur } else { MAX_FD_WALK };
    RawFd::try_from(highest.min(MAX_FD_WALK)).unwrap_or(RawFd::MAX)
}

#[cfg(test)]
mod tests;
