//! Named volumes: sparse ext4 disks under the home that outlive the boxes using them.
//!
//! ```text
//! <home>/volumes/<name>/disk.ext4     the disk (sparse; formatted at create)
//! <home>/volumes/<name>/volume.json   what it is ([`VolumeRecord`])
//! <home>/locks/volume-<name>.lock     held by each supervisor using it: exclusively for a
//!                                     read-write attach, shared for read-only
//! ```
//!
//! A volume's directory is built under the home's scratch directory and renamed into place
//! complete, so a reader never sees a half-made volume; removal renames it into the trash
//! first.

pub(crate) mod attach;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::disk;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::state::StateDb;
use crate::volume::VolumeSource;

/// The default size of a named volume (GiB): sparse, so only what is written uses host disk.
pub const DEFAULT_VOLUME_SIZE_GIB: u64 = 16;
/// The largest named volume (GiB): ext4 with 4 KiB blocks goes far beyond, but a typo of a few
/// digits should not make a disk the host cannot hold.
pub const MAX_VOLUME_SIZE_GIB: u64 = 4096;
/// The longest volume name: it is a path component and a lock file's name.
pub const MAX_VOLUME_NAME_LEN: usize = 64;
/// The label of every named volume's filesystem.
pub const VOLUME_DISK_LABEL: &str = "boxlite-vol";
/// The file describing a volume, in its directory.
const RECORD_FILE: &str = "volume.json";
/// The disk, in its directory.
const DISK_FILE: &str = "disk.ext4";
/// The most bytes of a `volume.json` read: it holds a name and two numbers.
const MAX_RECORD_LEN: u64 = 4096;

/// What `volume.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// The volume's name.
    pub name: String,
    /// The disk's size in bytes.
    pub size_bytes: u64,
    /// When it was created (milliseconds since the Unix epoch).
    pub created_at_ms: u64,
}

/// A named volume, as `volume ls` and `volume inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    /// The volume's name.
    pub name: String,
    /// The disk's size in bytes (its most).
    pub size_bytes: u64,
    /// Host disk space the volume takes now (the sparse file's allocated blocks).
    pub allocated_bytes: u64,
    /// When it was created (milliseconds since the Unix epoch).
    pub created_at_ms: u64,
    /// The disk image on the host.
    pub disk: PathBuf,
    /// The boxes that list it among their volumes, with where and how.
    pub boxes: Vec<VolumeUser>,
}

/// A box that lists a named volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeUser {
    /// The box's name.
    pub name: String,
    /// Its id.
    pub id: String,
    /// Where in the box.
    pub guest_path: String,
    /// Attached read-only.
    pub read_only: bool,
    /// Whether the box is running (its supervisor holds the volume).
    pub running: bool,
}

/// Checks a volume name: 1 to [`MAX_VOLUME_NAME_LEN`] of `[A-Za-z0-9_.-]`, starting with a
/// letter or digit (Docker's rule; it is a path component).
pub fn validate_volume_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_VOLUME_NAME_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        return Ok(());
    }
    Err(Error::option(
        "volume name",
        format!("{name:?}"),
        format!(
            "use 1 to {MAX_VOLUME_NAME_LEN} letters, digits, '_', '.' or '-', starting with a \
             letter or digit"
        ),
    ))
}

/// The directory of volume `name`.
pub fn volume_dir(layout: &Layout, name: &str) -> PathBuf {
    layout.home().join("volumes").join(name)
}

/// The disk of volume `name`.
pub fn volume_disk(layout: &Layout, name: &str) -> PathBuf {
    volume_dir(layout, name).join(DISK_FILE)
}

/// Creates volume `name` of `size_gib` GiB.
pub fn create(layout: &Layout, name: &str, size_gib: u64) -> Result<VolumeRecord> {
    validate_volume_name(name)?;
    if !(1..=MAX_VOLUME_SIZE_GIB).contains(&size_gib) {
        return Err(Error::option(
            "volume size",
            format!("{size_gib} GiB"),
            format!("use 1 to {MAX_VOLUME_SIZE_GIB} GiB"),
        ));
    }
    let dir = volume_dir(layout, name);
    if dir.exists() {
        return Err(Error::VolumeExists(name.into()));
    }
    let parent = layout.home().join("volumes");
    std::fs::create_dir_all(&parent).map_err(|e| Error::io("creating", &parent, e))?;
    let scratch = disk::ScratchDir::create(
        layout
            .tmp_dir()
            .join(format!("volume-{name}-{}", std::process::id())),
    )?;
    disk::create_ext4_disk(
        &scratch.path().join(DISK_FILE),
        size_gib << 10,
        VOLUME_DISK_LABEL,
    )?;
    let record = VolumeRecord {
        name: name.into(),
        size_bytes: size_gib << 30,
        created_at_ms: crate::state::now_ms(),
    };
    write_record(&scratch.path().join(RECORD_FILE), &record)?;
    disk::sync_dir(scratch.path())?;
    // Renaming a directory onto another fails unless the target is an empty directory, which
    // a volume's never is: of two creates of one name, one wins and the other is told.
    match std::fs::rename(scratch.path(), &dir) {
        Ok(()) => {}
        Err(_) if dir.exists() => return Err(Error::VolumeExists(name.into())),
        Err(e) => return Err(Error::io("renaming into place", &dir, e)),
    }
    scratch.forget();
    disk::sync_dir(&parent)?;
    Ok(record)
}

/// The record of volume `name`.
pub fn get(layout: &Layout, name: &str) -> Result<VolumeRecord> {
    validate_volume_name(name)?;
    let path = volume_dir(layout, name).join(RECORD_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoSuchVolume(name.into()));
        }
        Err(e) => return Err(Error::io("opening", &path, e)),
    };
    let mut text = String::new();
    use std::io::Read;
    file.take(MAX_RECORD_LEN)
        .read_to_string(&mut text)
        .map_err(|e| Error::io("reading", &path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::InvalidInput(format!("{}: not a volume record: {e}", path.display())))
}

/// Every volume's record, by name.
pub fn list(layout: &Layout) -> Result<Vec<VolumeRecord>> {
    let parent = layout.home().join("volumes");
    let entries = match std::fs::read_dir(&parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", &parent, e)),
    };
    let mut records = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", &parent, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        match get(layout, &name) {
            Ok(record) => records.push(record),
            // Not ours (a stray file, a bad name): not a volume.
            Err(Error::NoSuchVolume(_) | Error::InvalidOption { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(records)
}

/// What `inspect` shows of `record`: its disk use and the boxes listing it.
pub fn info(layout: &Layout, db: &StateDb, record: VolumeRecord) -> Result<VolumeInfo> {
    use std::os::unix::fs::MetadataExt;
    let disk = volume_disk(layout, &record.name);
    let allocated_bytes = std::fs::metadata(&disk)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0);
    Ok(VolumeInfo {
        boxes: users(db, &record.name)?,
        name: record.name,
        size_bytes: record.size_bytes,
        allocated_bytes,
        created_at_ms: record.created_at_ms,
        disk,
    })
}

/// The boxes whose options list volume `name`.
pub fn users(db: &StateDb, name: &str) -> Result<Vec<VolumeUser>> {
    let mut users = Vec::new();
    for record in db.list_boxes()? {
        for volume in &record.options.volumes {
            if matches!(&volume.source, VolumeSource::Named { name: n } if n == name) {
                users.push(VolumeUser {
                    name: record.name.clone(),
                    id: record.id.clone(),
                    guest_path: volume.guest_path.clone(),
                    read_only: volume.read_only,
                    running: record.state.is_active(),
                });
            }
        }
    }
    Ok(users)
}

/// Removes volume `name`: refused while any box lists it (remove those boxes first), and
/// while any supervisor holds it.
pub fn remove(layout: &Layout, db: &StateDb, name: &str) -> Result<()> {
    get(layout, name)?;
    // Held through the removal: a box starting now waits for it, then finds no volume.
    let Some(_lock) = attach::try_hold(layout, name, false)? else {
        return Err(in_use(db, name, "attached to a running box")?);
    };
    let boxes = users(db, name)?;
    if !boxes.is_empty() {
        return Err(Error::VolumeInUse {
            name: name.into(),
            how: "used".into(),
            boxes: boxes
                .iter()
                .map(|b| format!("box {} (remove it first)", b.name))
                .collect(),
        });
    }
    let dir = volume_dir(layout, name);
    let trash = layout.trash_dir();
    std::fs::create_dir_all(&trash).map_err(|e| Error::io("creating", &trash, e))?;
    let doomed = trash.join(format!("volume-{name}-{}", std::process::id()));
    std::fs::rename(&dir, &doomed).map_err(|e| Error::io("removing", &dir, e))?;
    disk::remove_tree(&doomed)
}

/// The error for volume `name` held by a running box: which boxes, as the database says.
pub(crate) fn in_use(db: &StateDb, name: &str, how: &str) -> Result<Error> {
    let boxes: Vec<String> = users(db, name)?
        .into_iter()
        .filter(|u| u.running)
        .map(|u| {
            let mode = if u.read_only {
                "read-only"
            } else {
                "read-write"
            };
            format!("box {} ({mode} at {})", u.name, u.guest_path)
        })
        .collect();
    Ok(Error::VolumeInUse {
        name: name.into(),
        how: how.into(),
        boxes: if boxes.is_empty() {
            vec!["a box that is starting or stopping".into()]
        } else {
            boxes
        },
    })
}

/// Writes `record` to `path` and syncs it.
fn write_record(path: &Path, record: &VolumeRecord) -> Result<()> {
    let json = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::InvalidInput(format!("encoding the volume record: {e}")))?;
    let mut file = File::create(path).map_err(|e| Error::io("creating", path, e))?;
    file.write_all(&json)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("writing", path, e))
}
