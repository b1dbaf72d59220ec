//! What the database holds, as Rust values, and how rows map to them.

use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::str::FromStr;

use rusqlite::Row;
use rusqlite::types::Type;
use serde::{Deserialize, Serialize};

use super::from_sql_int;
use crate::error::{Error, Result};
use crate::options::BoxOptions;

/// Where a box is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxState {
    /// Made (disk and record), never started or not since it stopped.
    Created,
    /// Its supervisor is booting the VM.
    Starting,
    /// The VM is up and its agent answers.
    Running,
    /// A stop was asked for and is under way.
    Stopping,
    /// Stopped cleanly (or its main command ended).
    Stopped,
    /// Its VM or supervisor ended without being asked to.
    Crashed,
}

impl BoxState {
    /// Every state, in life order.
    pub const ALL: [BoxState; 6] = [
        BoxState::Created,
        BoxState::Starting,
        BoxState::Running,
        BoxState::Stopping,
        BoxState::Stopped,
        BoxState::Crashed,
    ];

    /// Whether a supervisor should be alive for the box (starting, running or stopping).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            BoxState::Starting | BoxState::Running | BoxState::Stopping
        )
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            BoxState::Created => "created",
            BoxState::Starting => "starting",
            BoxState::Running => "running",
            BoxState::Stopping => "stopping",
            BoxState::Stopped => "stopped",
            BoxState::Crashed => "crashed",
        }
    }
}

impl fmt::Display for BoxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BoxState {
    type Err = Error;

    fn from_str(s: &str) -> Result<BoxState> {
        BoxState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown box state {s:?}: use created, starting, running, stopping, stopped or crashed"
                ))
            })
    }
}

/// Everything the runtime remembers about one box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxRecord {
    /// 64 lowercase hex digits, made by the caller.
    pub id: String,
    /// Unique among boxes.
    pub name: String,
    /// The image reference as the user gave it.
    pub image: String,
    /// The image's manifest digest, `sha256:…`.
    pub image_digest: String,
    /// How the box was made.
    pub options: BoxOptions,
    /// Where it is in its life.
    pub state: BoxState,
    /// When it was made (Unix ms).
    pub created_at_ms: u64,
    /// When it last started (Unix ms).
    pub started_at_ms: Option<u64>,
    /// When it last stopped or crashed (Unix ms).
    pub stopped_at_ms: Option<u64>,
    /// The engine that ran it last, e.g. "qemu (tcg)".
    pub engine: Option<String>,
    /// Its supervisor's process id, while it has one.
    pub supervisor_pid: Option<u32>,
    /// Its VM's process id, while it has one.
    pub vm_pid: Option<u32>,
    /// How long the last boot took, in ms.
    pub boot_ms: Option<f64>,
    /// Commands run in it, over its whole life.
    pub exec_count: u64,
    /// Bytes of command input and output streamed, over its whole life.
    pub bytes_streamed: u64,
    /// The main command's exit code, if it had one and it ended.
    pub exit_code: Option<i32>,
    /// Why it stopped or crashed, in words.
    pub reason: Option<String>,
}

impl BoxRecord {
    /// A box just made: `created`, never started, with no counters yet.
    pub fn created(
        id: String,
        name: String,
        image_digest: String,
        options: BoxOptions,
        created_at_ms: u64,
    ) -> BoxRecord {
        BoxRecord {
            id,
            name,
            image: options.image.clone(),
            image_digest,
            options,
            state: BoxState::Created,
            created_at_ms,
            started_at_ms: None,
            stopped_at_ms: None,
            engine: None,
            supervisor_pid: None,
            vm_pid: None,
            boot_ms: None,
            exec_count: 0,
            bytes_streamed: 0,
            exit_code: None,
            reason: None,
        }
    }
}

/// The columns of `boxes`, in the order [`BoxRecord::from_row`] reads them.
pub(super) const BOX_COLUMNS: &str = "id, name, image, image_digest, options, state, \
    created_at_ms, started_at_ms, stopped_at_ms, engine, supervisor_pid, vm_pid, boot_ms, \
    exec_count, bytes_streamed, exit_code, reason";

impl BoxRecord {
    /// Reads a row selected with [`BOX_COLUMNS`].
    pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<BoxRecord> {
        let options: String = row.get(4)?;
        let options = serde_json::from_str(&options)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, Type::Text, Box::new(e)))?;
        let state: String = row.get(5)?;
        let state = state
            .parse()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(5, Type::Text, Box::new(e)))?;
        Ok(BoxRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            image: row.get(2)?,
            image_digest: row.get(3)?,
            options,
            state,
            created_at_ms: from_sql_int(row.get(6)?),
            started_at_ms: row.get::<_, Option<i64>>(7)?.map(from_sql_int),
            stopped_at_ms: row.get::<_, Option<i64>>(8)?.map(from_sql_int),
            engine: row.get(9)?,
            supervisor_pid: row.get(10)?,
            vm_pid: row.get(11)?,
            boot_ms: row.get(12)?,
            exec_count: from_sql_int(row.get(13)?),
            bytes_streamed: from_sql_int(row.get(14)?),
            exit_code: row.get(15)?,
            reason: row.get(16)?,
        })
    }
}

/// A built base disk: the read-only ext4 image of one image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseDiskRecord {
    /// The image's manifest digest, `sha256:…`.
    pub digest: String,
    /// The image's name when the disk was built (for listings).
    pub image_name: String,
    /// The disk file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// When it was built (Unix ms).
    pub created_at_ms: u64,
}

/// The columns of `base_disks`, in the order [`BaseDiskRecord::from_row`] reads them.
pub(super) const DISK_COLUMNS: &str = "digest, image_name, path, size, created_at_ms";

impl BaseDiskRecord {
    /// Reads a row selected with [`DISK_COLUMNS`]; paths are stored as raw bytes, since a
    /// Unix path need not be UTF-8.
    pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<BaseDiskRecord> {
        let path: Vec<u8> = row.get(2)?;
        Ok(BaseDiskRecord {
            digest: row.get(0)?,
            image_name: row.get(1)?,
            path: PathBuf::from(std::ffi::OsString::from_vec(path)),
            size: from_sql_int(row.get(3)?),
            created_at_ms: from_sql_int(row.get(4)?),
        })
    }
}
