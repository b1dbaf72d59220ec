//! The runtime's state in SQLite (`<home>/state.db`): boxes, base disks, and which box uses
//! which image.
//!
//! Many processes (the CLI, every box's supervisor) use one database at once, so it runs in
//! WAL mode with a generous busy timeout, and every change is one transaction; a
//! read-modify-write takes the write lock first (`BEGIN IMMEDIATE`) so no update is lost.

mod boxes;
mod disks;
mod lifecycle;
mod record;
mod schema;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{DbError, Error, Result};

pub use lifecycle::Ending;
pub use record::{BaseDiskRecord, BoxRecord, BoxState};

/// How long a statement waits for another process's write lock before failing: supervisors
/// and CLI commands write concurrently, and each transaction is short, so several seconds
/// only ever runs out when something is truly stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The pause between attempts at switching a contended database to WAL mode.
const WAL_RETRY_PAUSE: Duration = Duration::from_millis(5);

/// The runtime's database; one connection, usable from any thread.
#[derive(Debug)]
pub struct StateDb {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl StateDb {
    /// Opens (creating if needed, with its parent directory) the database at `path` and
    /// brings its schema up to date; refuses a schema newer than this build knows.
    pub fn open(path: &Path) -> Result<StateDb> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let wrap = |source| Error::State {
            path: path.to_path_buf(),
            source: DbError(source),
        };
        let mut conn = Connection::open_with_flags(path, flags).map_err(wrap)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(wrap)?;
        // The first statement that reads the file: a damaged or foreign file fails here, and
        // the error names it.
        let mode = wal_mode(&conn).map_err(wrap)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // WAL is refused on filesystems without shared memory (some network mounts); the
            // rollback journal still works, only with less concurrency.
            conn.pragma_update(None, "journal_mode", "DELETE")
                .map_err(wrap)?;
        }
        schema::migrate(&mut conn).map_err(wrap)?;
        Ok(StateDb {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    #[cfg(test)]
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection; a panic in another thread's closure leaves no half transaction behind
    /// (it is rolled back when dropped), so a poisoned lock is still safe to use.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wraps an SQLite error with the database's path.
    fn err(&self, source: rusqlite::Error) -> Error {
        Error::State {
            path: self.path.clone(),
            source: DbError(source),
        }
    }
}

/// Asks for WAL mode; the mode the database is in. Switching takes the database alone and
/// SQLite answers `SQLITE_BUSY` at once, without its busy handler, while another connection
/// opening the same fresh file holds it: retried up to [`BUSY_TIMEOUT`].
fn wal_mode(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(WAL_RETRY_PAUSE);
            }
            answer => return answer,
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// An SQLite integer from a count that may exceed it (saturating; SQLite integers are i64).
fn to_sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count from an SQLite integer (negative values, which we never write, read as 0).
fn from_sql_int(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
