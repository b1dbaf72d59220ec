//! Running `mkfs.ext4`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Artefact, Error, Result};
use crate::host::find_program;

/// The program.
const MKFS: &str = "mkfs.ext4";
/// Where e2fsprogs lives when `PATH` lacks the sbin directories (as it does for users on
/// Debian).
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];
/// How much of mkfs's stderr an error quotes.
const MAX_STDERR_SHOWN: usize = 4096;

/// Finds `mkfs.ext4`.
pub fn program() -> Result<PathBuf> {
    find_program(MKFS)
        .or_else(|| {
            SBIN_DIRS
                .iter()
                .map(|dir| Path::new(dir).join(MKFS))
                .find(|p| find_program(&p.to_string_lossy()).is_some())
        })
        .ok_or_else(|| Error::Missing {
            what: Artefact::Program(MKFS.into()),
            hint: "install e2fsprogs (apt-get install e2fsprogs)".into(),
        })
}

/// The arguments every disk is made with: quiet, no questions, 4 KiB blocks, 256-byte inodes
/// (room for xattrs and timestamps past 2038 whatever mke2fs.conf says for small disks), no
/// blocks reserved for root, and `label`.
pub fn common_args(label: &str) -> Vec<OsString> {
    [
        "-q", "-F", "-b", "4096", "-I", "256", "-m", "0", "-L", label,
    ]
    .map(OsString::from)
    .to_vec()
}

/// Runs `program` with `args`; a failure carries mkfs's own words. `target` names the disk
/// in errors.
pub fn run(program: &Path, args: &[OsString], target: &Path) -> Result<()> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::io("running", program, e))?;
    if output.status.success() {
        return Ok(());
    }
    let mut words = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if words.is_empty() {
        words = String::from_utf8_lossy(&output.stdout).trim().to_string();
    }
    if words.len() > MAX_STDERR_SHOWN {
        let mut cut = MAX_STDERR_SHOWN;
        while !words.is_char_boundary(cut) {
            cut -= 1;
        }
        words.truncate(cut);
        words.push('…');
    }
    Err(Error::io(
        "running mkfs.ext4 to make",
        target,
        std::io::Error::other(format!("{}: {words}", output.status)),
    ))
}
