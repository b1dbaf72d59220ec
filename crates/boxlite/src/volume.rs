//! A box's volumes, as the caller asks for them ([`Volume`]): a host directory shared over
//! virtio-fs (a bind volume) or a named volume, a sparse ext4 disk under the home that outlives
//! boxes. The options are checked here; the store of named volumes is [`crate::volumes`], the
//! daemons and locks are the supervisor's.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most volumes a box takes: each is a virtio device, and boxlite-vmm has 19 of them for
/// everything (disks, console, network, rng); 8 leaves room for the rest. An engine may allow
/// fewer: QEMU's microvm has 8 virtio devices in all, so 4 volumes beside a network card.
pub const MAX_VOLUMES: usize = 8;
/// The longest path in the box a volume is mounted at: the agent resolves it one component at a
/// time, and real mount points are short.
pub const MAX_GUEST_PATH_LEN: usize = 1024;

/// What a volume is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum VolumeSource {
    /// A host directory, shared live over virtio-fs: what the box writes is on the host at once.
    Bind {
        /// The directory, absolute.
        #[serde(with = "crate::pathbytes")]
        path: PathBuf,
    },
    /// A named volume (`boxlite volume create`): an ext4 disk the box mounts.
    Named {
        /// Its name.
        name: String,
    },
}

/// One volume of a box: what, where in the box, and whether the box may write to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// What is mounted.
    pub source: VolumeSource,
    /// Where in the box: an absolute path, created if missing.
    pub guest_path: String,
    /// Mounted read-only (for a bind volume, the host's daemon refuses writes too).
    #[serde(default)]
    pub read_only: bool,
}

impl Volume {
    /// A host directory at `guest_path`.
    pub fn bind(host_dir: impl Into<PathBuf>, guest_path: impl Into<String>) -> Volume {
        Volume {
            source: VolumeSource::Bind {
                path: host_dir.into(),
            },
            guest_path: guest_path.into(),
            read_only: false,
        }
    }

    /// Named volume `name` at `guest_path`.
    pub fn named(name: impl Into<String>, guest_path: impl Into<String>) -> Volume {
        Volume {
            source: VolumeSource::Named { name: name.into() },
            guest_path: guest_path.into(),
            read_only: false,
        }
    }

    /// The same volume, read-only.
    pub fn read_only(mut self) -> Volume {
        self.read_only = true;
        self
    }

    /// Checks the volume's own fields (not whether its source exists: see
    /// [`Volume::check_source`]).
    pub fn validate(&self) -> Result<()> {
        validate_guest_path(&self.guest_path)?;
        match &self.source {
            VolumeSource::Bind { path } => {
                if !path.is_absolute() {
                    return Err(Error::option(
                        "volume",
                        self,
                        "a host directory must be an absolute path",
                    ));
                }
                if path.as_os_str().as_encoded_bytes().contains(&0) {
                    return Err(Error::option(
                        "volume",
                        self,
                        "the host path has a NUL byte",
                    ));
                }
                Ok(())
            }
            VolumeSource::Named { name } => crate::volumes::validate_volume_name(name),
        }
    }

    /// Checks that a bind volume's directory exists (a named volume's existence is the store's
    /// to check).
    pub fn check_source(&self) -> Result<()> {
        if let VolumeSource::Bind { path } = &self.source {
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(Error::option(
                        "volume",
                        self,
                        format!("{} is not a directory", path.display()),
                    ));
                }
                Err(e) => {
                    return Err(Error::option(
                        "volume",
                        self,
                        format!(
                            "the host directory {} cannot be used ({e}); create it first",
                            path.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            VolumeSource::Bind { path } => write!(f, "{}", path.display())?,
            VolumeSource::Named { name } => f.write_str(name)?,
        }
        write!(f, ":{}", self.guest_path)?;
        if self.read_only {
            f.write_str(":ro")?;
        }
        Ok(())
    }
}

/// Docker's `-v` syntax: `SOURCE:GUESTPATH[:ro|:rw]`, where a SOURCE starting with `/` is a
/// host directory and any other is a volume name. A relative host path is the caller's to make
/// absolute (the library has no working directory to resolve it against).
impl FromStr for Volume {
    type Err = Error;
    fn from_str(s: &str) -> Result<Volume> {
        let bad = |why: &str| Error::option("volume", format!("{s:?}"), why.to_string());
        let mut parts = s.split(':');
        let (Some(source), Some(guest)) = (parts.next(), parts.next()) else {
            return Err(bad("expected SOURCE:GUESTPATH[:ro]"));
        };
        let read_only = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(_) => return Err(bad("the mode after the second ':' must be ro or rw")),
        };
        if parts.next().is_some() {
            return Err(bad(
                "expected SOURCE:GUESTPATH[:ro] (a ':' in a path is not supported)",
            ));
        }
        if source.is_empty() {
            return Err(bad("no host directory or volume name before the ':'"));
        }
        let volume = Volume {
            source: if source.starts_with('/') {
                VolumeSource::Bind {
                    path: source.into(),
                }
            } else if source.starts_with('.') || source.contains('/') {
                return Err(bad(
                    "a host directory must be an absolute path (a name without '/' is a \
                     named volume)",
                ));
            } else {
                VolumeSource::Named {
                    name: source.into(),
                }
            },
            guest_path: guest.into(),
            read_only,
        };
        volume.validate()?;
        Ok(volume)
    }
}

/// Checks a box's volumes together: each valid, at most [`MAX_VOLUMES`], no two at one path,
/// and a named volume at most once (its disk can only be attached once).
pub fn validate_all(volumes: &[Volume]) -> Result<()> {
    if volumes.len() > MAX_VOLUMES {
        return Err(Error::option(
            "volumes",
            volumes.len(),
            format!("a box takes at most {MAX_VOLUMES} volumes"),
        ));
    }
    for (i, volume) in volumes.iter().enumerate() {
        volume.validate()?;
        for other in &volumes[..i] {
            if normal(&other.guest_path) == normal(&volume.guest_path) {
                return Err(Error::option(
                    "volume",
                    volume,
                    format!("{other} is mounted at the same path"),
                ));
            }
            if let (VolumeSource::Named { name: a }, VolumeSource::Named { name: b }) =
                (&other.source, &volume.source)
                && a == b
            {
                return Err(Error::option(
                    "volume",
                    volume,
                    "a named volume can be attached to a box only once",
                ));
            }
        }
    }
    Ok(())
}

/// Checks a path in the box: absolute, not `/`, no `..`, no NUL, at most
/// [`MAX_GUEST_PATH_LEN`] bytes.
pub fn validate_guest_path(path: &str) -> Result<()> {
    let bad = |why: &str| Error::option("volume", format!("guest path {path:?}"), why.to_string());
    if !path.starts_with('/') {
        return Err(bad("must be an absolute path in the box, like /data"));
    }
    if path.len() > MAX_GUEST_PATH_LEN {
        return Err(bad(&format!("is over {MAX_GUEST_PATH_LEN} bytes")));
    }
    if path.contains('\0') {
        return Err(bad("has a NUL byte"));
    }
    if Path::new(path)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(bad("has a '..' component"));
    }
    if normal(path) == "/" {
        return Err(bad(
            "cannot be the box's root; mount it at a directory like /data",
        ));
    }
    Ok(())
}

/// `path` without `.` components, repeated or trailing slashes.
pub(crate) fn normal(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// `volumes` in mount order: parents before what is mounted inside them.
pub(crate) fn mount_order(volumes: &[Volume]) -> Vec<&Volume> {
    let mut sorted: Vec<&Volume> = volumes.iter().collect();
    sorted.sort_by_key(|v| normal(&v.guest_path).matches('/').count());
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_syntax_parses() {
        let v: Volume = "/srv/data:/data".parse().unwrap();
        assert_eq!(v, Volume::bind("/srv/data", "/data"));
        let v: Volume = "cache:/root/.cache:ro".parse().unwrap();
        assert_eq!(v, Volume::named("cache", "/root/.cache").read_only());
        assert_eq!(v.to_string(), "cache:/root/.cache:ro");
        let v: Volume = "/a:/b:rw".parse().unwrap();
        assert!(!v.read_only);
    }

    #[test]
    fn bad_volumes_are_refused_with_the_fix() {
        for (input, words) in [
            ("/a", "SOURCE:GUESTPATH"),
            ("/a:data", "absolute path in the box"),
            ("/a:/", "cannot be the box's root"),
            ("/a:/x/../etc", "'..'"),
            ("/a:/b:rx", "ro or rw"),
            ("/a:/b:ro:x", "':' in a path"),
            ("./here:/b", "absolute path"),
            ("a/b:/b", "absolute path"),
            (":/b", "no host directory"),
            ("-x:/b", "letters, digits"),
        ] {
            let err = input.parse::<Volume>().unwrap_err().to_string();
            assert!(err.contains(words), "{input}: {err}");
        }
    }

    #[test]
    fn a_box_refuses_clashing_volumes() {
        let ok = [Volume::bind("/a", "/data"), Volume::named("v", "/data/v")];
        validate_all(&ok).unwrap();
        let same = [Volume::bind("/a", "/data"), Volume::bind("/b", "/data/")];
        assert!(
            validate_all(&same)
                .unwrap_err()
                .to_string()
                .contains("same path")
        );
        let twice = [
            Volume::named("v", "/x"),
            Volume::named("v", "/y").read_only(),
        ];
        assert!(
            validate_all(&twice)
                .unwrap_err()
                .to_string()
                .contains("only once")
        );
        let many: Vec<Volume> = (0..=MAX_VOLUMES)
            .map(|i| Volume::bind("/a", format!("/v{i}")))
            .collect();
        assert!(validate_all(&many).is_err());
    }

    #[test]
    fn parents_mount_first() {
        let vols = [
            Volume::bind("/a", "/data/inner/x"),
            Volume::bind("/b", "/data"),
            Volume::bind("/c", "/data/inner"),
        ];
        let order: Vec<&str> = mount_order(&vols)
            .iter()
            .map(|v| v.guest_path.as_str())
            .collect();
        assert_eq!(order, ["/data", "/data/inner", "/data/inner/x"]);
    }

    #[test]
    fn a_missing_host_directory_is_named() {
        let v = Volume::bind("/nonexistent/boxlite-test", "/data");
        let err = v.check_source().unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/boxlite-test") && err.contains("create it"),
            "{err}"
        );
    }
}
