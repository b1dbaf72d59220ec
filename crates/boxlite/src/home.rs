//! The state directory is private to its user: created 0700, refused when another user owns
//! it or can write to it (they could plant sockets, disks or a database there), tightened to
//! 0700 when it is ours but readable by others (box environments and console logs are
//! secrets).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// The mode of every directory the runtime makes under the home.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// The mode of every file the runtime makes under the home.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `home` (0700) if missing, and checks that it is safe to keep boxes in.
pub fn prepare(home: &Path) -> Result<()> {
    if let Some(parent) = home.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    }
    match std::fs::DirBuilder::new()
        .mode(PRIVATE_DIR_MODE)
        .create(home)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("creating", home, e)),
    }
    let meta = std::fs::metadata(home).map_err(|e| Error::io("inspecting", home, e))?;
    check(home, &meta, rustix::process::geteuid().as_raw())?;
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(|e| Error::io("making private", home, e))?;
    }
    Ok(())
}

/// Refuses a home that is not a directory, that another user owns, or that others can
/// write to.
fn check(home: &Path, meta: &std::fs::Metadata, uid: u32) -> Result<()> {
    let problem = if !meta.is_dir() {
        "it is not a directory".to_string()
    } else if meta.uid() != uid {
        format!(
            "it belongs to uid {}, not to you (uid {uid}); another user could read or replace \
             your boxes there, so use a state directory of your own",
            meta.uid()
        )
    } else if meta.mode() & 0o022 != 0 {
        format!(
            "others can write to it (mode {:o}), so they could plant sockets and disks there; \
             make it private (chmod 700 {})",
            meta.mode() & 0o7777,
            home.display()
        )
    } else {
        return Ok(());
    };
    Err(Error::UnsafeHome {
        path: home.to_path_buf(),
        problem,
    })
}

/// Creates directory `dir` (and missing parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io("creating", dir, e))
}

/// Makes the existing file `path` readable and writable by its owner alone.
pub fn make_private(path: &Path) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        .map_err(|e| Error::io("making private", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_home_is_private_and_an_open_one_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("a/home");
        prepare(&home).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&home), 0o700);
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&home).unwrap();
        assert_eq!(mode(&home), 0o700);
    }

    #[test]
    fn homes_others_can_write_or_own_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare(&home).unwrap_err();
        assert!(matches!(err, Error::UnsafeHome { .. }), "{err}");
        assert!(err.to_string().contains("chmod 700"), "{err}");
        // Still refused, untouched: fixing it is the user's call.
        assert_eq!(std::fs::metadata(&home).unwrap().mode() & 0o777, 0o777);
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let meta = std::fs::metadata(&home).unwrap();
        let err = check(&home, &meta, meta.uid() + 1).unwrap_err();
        assert!(err.to_string().contains("belongs to uid"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(prepare(&file).is_err());
    }
}
