//! The schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! `MIGRATIONS[i]` takes a database from version `i` to `i + 1`; a new release appends to the
//! list and never edits an entry, so any older database is brought forward step by step. A
//! database whose version is beyond the list was written by a newer boxlite, whose meaning we
//! cannot know: it is refused, never "downgraded".

use rusqlite::{Connection, TransactionBehavior};

/// The migrations, oldest first.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: boxes and base disks.
    "CREATE TABLE boxes (
        id              TEXT PRIMARY KEY NOT NULL,
        name            TEXT NOT NULL UNIQUE,
        image           TEXT NOT NULL,
        image_digest    TEXT NOT NULL,
        options         TEXT NOT NULL,
        state           TEXT NOT NULL,
        created_at_ms   INTEGER NOT NULL,
        started_at_ms   INTEGER,
        stopped_at_ms   INTEGER,
        engine          TEXT,
        supervisor_pid  INTEGER,
        vm_pid          INTEGER,
        boot_ms         REAL,
        exec_count      INTEGER NOT NULL DEFAULT 0,
        bytes_streamed  INTEGER NOT NULL DEFAULT 0,
        exit_code       INTEGER,
        reason          TEXT
    );
    CREATE INDEX boxes_by_image ON boxes (image_digest);
    CREATE TABLE base_disks (
        digest          TEXT PRIMARY KEY NOT NULL,
        image_name      TEXT NOT NULL,
        path            BLOB NOT NULL,
        size            INTEGER NOT NULL,
        created_at_ms   INTEGER NOT NULL
    );",
    // 2: a box's row is written before its directory and disk are complete (it reserves the
    // name), and stays invisible until they are: 1 while its creator is still at work, or
    // died there (its creator holds the box's lock meanwhile; `Runtime::open` removes the
    // rows of dead creators, and their directories).
    "ALTER TABLE boxes ADD COLUMN incomplete INTEGER NOT NULL DEFAULT 0;",
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to date in one write transaction (so two processes opening a fresh
/// database at once do not both create it).
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > CURRENT_VERSION {
        return Err(newer_schema(version));
    }
    for (from, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", from as i64 + 1)?;
    }
    tx.commit()
}

/// The error for a database from a newer boxlite.
fn newer_schema(version: i64) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(format!(
            "schema version {version} was written by a newer boxlite (this one knows up to \
             {CURRENT_VERSION}); use that boxlite, or another --home"
        )),
    )
}
