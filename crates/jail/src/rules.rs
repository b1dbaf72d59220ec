//! Landlock: the ruleset built in the parent (the child only calls
//! `landlock_restrict_self` on its descriptor).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access as _, AccessFs, AccessNet, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope,
};

use crate::error::{Error, Result};

/// The newest Landlock ABI these rules were written and tested against (Linux 6.15). Newer
/// kernels get exactly these restrictions (the crate never handles rights we did not vet);
/// older ones get what they support (best effort: ABI 1 files, 2 renames across
/// directories, 3 truncation, 4 TCP, 5 device ioctls, 6 signal and abstract-socket scopes).
const TESTED_ABI: ABI = ABI::V7;

/// What a path beneath a rule may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Read files and list directories.
    Read,
    /// Read, and execute programs and load libraries.
    Execute,
    /// Read and write files (not create or remove them).
    ReadWrite,
    /// A device: read, write, and `ioctl`.
    Device,
    /// A directory where Unix sockets may be created (and nothing else).
    MakeSockets,
    /// A tree the process manages as a filesystem server does (a shared directory): read,
    /// write, create, rename and remove files, directories, symlinks, fifos and sockets beneath
    /// it; never device nodes (a guest must not plant one on the host) nor execute.
    Tree,
}

impl Access {
    fn rights(self) -> BitFlags<AccessFs> {
        match self {
            Access::Read => AccessFs::ReadFile | AccessFs::ReadDir,
            Access::Execute => AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::Execute,
            Access::ReadWrite => AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate,
            Access::Device => AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::IoctlDev,
            Access::MakeSockets => AccessFs::MakeSock.into(),
            Access::Tree => {
                AccessFs::ReadFile
                    | AccessFs::ReadDir
                    | AccessFs::WriteFile
                    | AccessFs::Truncate
                    | AccessFs::RemoveDir
                    | AccessFs::RemoveFile
                    | AccessFs::MakeDir
                    | AccessFs::MakeReg
                    | AccessFs::MakeSym
                    | AccessFs::MakeFifo
                    | AccessFs::MakeSock
                    | AccessFs::Refer
            }
        }
    }
}

/// The kernel's Landlock ABI version (0: none: not built, or not enabled at boot).
pub fn abi_version() -> i32 {
    // SAFETY: landlock_create_ruleset(2) with a NULL attribute, size 0 and the VERSION flag
    // only reports the ABI version; it creates nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(rc).unwrap_or(0).max(0)
}

/// `LANDLOCK_CREATE_RULESET_VERSION` (linux/landlock.h).
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;

/// What the ruleset restricts at kernel ABI `abi`, in words.
pub fn describe(abi: i32, rules: usize) -> String {
    let mut what = format!("ABI {abi}: files limited to {rules} path rule(s)");
    what.push_str(if abi >= 4 {
        ", TCP bind and connect denied"
    } else {
        ", TCP not restricted (needs ABI 4, Linux 6.7)"
    });
    what.push_str(if abi >= 6 {
        ", signals and abstract Unix sockets scoped to the box"
    } else {
        ", signals and abstract sockets not scoped (needs ABI 6, Linux 6.12)"
    });
    what
}

/// Builds a ruleset that allows only `rules`; paths that do not exist are left out (a
/// program's optional files). `None` where the kernel has no Landlock.
pub(crate) fn build(rules: &[(PathBuf, Access)]) -> Result<Option<(OwnedFd, usize)>> {
    let landlock = |e: landlock::RulesetError| Error::Landlock(e.to_string());
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(TESTED_ABI))
        .map_err(landlock)?
        .handle_access(AccessNet::from_all(TESTED_ABI))
        .map_err(landlock)?
        .scope(Scope::from_all(TESTED_ABI))
        .map_err(landlock)?
        .create()
        .map_err(landlock)?;
    let mut added = 0;
    for (path, access) in rules {
        let Some(fd) = open(path)? else {
            continue;
        };
        let mut rights = access.rights();
        if !path.is_dir() {
            rights &= AccessFs::from_file(TESTED_ABI);
        }
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .map_err(landlock)?;
        added += 1;
    }
    let fd: Option<OwnedFd> = ruleset.into();
    Ok(fd.map(|fd| (fd, added)))
}

/// `path` opened for a rule, or `None` if it does not exist.
fn open(path: &Path) -> Result<Option<PathFd>> {
    if !path.exists() {
        return Ok(None);
    }
    PathFd::new(path)
        .map(Some)
        .map_err(|e| Error::Landlock(format!("{}: {e}", path.display())))
}
