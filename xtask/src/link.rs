//! Linking the built guest files (kernel, initramfs) where the `boxlite` runtime looks for
//! them: a state directory's `guest/`, or the per-user directory every state directory
//! shares ([`boxlite::user_guest_dir`]).
//!
//! Links, not copies: the cache keeps one copy per build, and a rebuild only has to move the
//! links.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Links each `(name, target)` as `dir/name`, creating `dir`.
pub fn into_dir<P: AsRef<Path>>(dir: &Path, files: &[(&str, P)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, target) in files {
        // Absolute, so the link still resolves from wherever the runtime reads it (the
        // cache directory may have been given relative, through BOXLITE_XTASK_CACHE).
        let target = target.as_ref();
        let target = target
            .canonicalize()
            .with_context(|| format!("{}", target.display()))?;
        let link = dir.join(name);
        // A fresh link renamed over the old one: a concurrent reader never finds it missing.
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)
            .with_context(|| format!("linking {}", tmp.display()))?;
        std::fs::rename(&tmp, &link).with_context(|| format!("replacing {}", link.display()))?;
    }
    Ok(())
}

/// Links `files` into the per-user guest directory, where a runtime made from the
/// environment finds them whatever its `--home`; returns that directory.
pub fn for_user<P: AsRef<Path>>(files: &[(&str, P)]) -> Result<PathBuf> {
    let dir = boxlite::user_guest_dir();
    into_dir(&dir, files)?;
    for (name, _) in files {
        eprintln!("linked {}", dir.join(name).display());
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_absolute_and_replaced_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        std::fs::write(&old, "old").unwrap();
        std::fs::write(&new, "new").unwrap();
        let guest = dir.path().join("home/guest");
        into_dir(&guest, &[("vmlinux", &old)]).unwrap();
        assert_eq!(
            std::fs::read_to_string(guest.join("vmlinux")).unwrap(),
            "old"
        );
        into_dir(&guest, &[("vmlinux", &new)]).unwrap();
        let target = std::fs::read_link(guest.join("vmlinux")).unwrap();
        assert!(target.is_absolute(), "{}", target.display());
        assert_eq!(
            std::fs::read_to_string(guest.join("vmlinux")).unwrap(),
            "new"
        );
        // Only the link is left: no temporary link behind it.
        let names: Vec<_> = std::fs::read_dir(&guest)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["vmlinux"]);
        // A missing target is an error, not a dangling link.
        let err = into_dir(&guest, &[("bzImage", &dir.path().join("nope"))]).unwrap_err();
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
        assert!(!guest.join("bzImage").exists());
    }
}
