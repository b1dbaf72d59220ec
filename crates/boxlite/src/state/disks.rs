//! Base disk records: which image's read-only disk is built, and where.

use std::os::unix::ffi::OsStrExt;

use rusqlite::{OptionalExtension, params};

use super::record::DISK_COLUMNS;
use super::{BaseDiskRecord, StateDb, to_sql_int};
use crate::error::Result;

impl StateDb {
    /// Records a built base disk, replacing any record for the same digest.
    pub fn put_base_disk(&self, rec: &BaseDiskRecord) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            &format!(
                "INSERT OR REPLACE INTO base_disks ({DISK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
            ),
            params![
                rec.digest,
                rec.image_name,
                rec.path.as_os_str().as_bytes(),
                to_sql_int(rec.size),
                to_sql_int(rec.created_at_ms),
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The base disk of the image with manifest digest `digest`, if one is recorded.
    pub fn base_disk(&self, digest: &str) -> Result<Option<BaseDiskRecord>> {
        let conn = self.conn();
        conn.query_row(
            &format!("SELECT {DISK_COLUMNS} FROM base_disks WHERE digest = ?1"),
            [digest],
            BaseDiskRecord::from_row,
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    #[cfg(test)]
    /// Every recorded base disk, oldest first.
    pub fn list_base_disks(&self) -> Result<Vec<BaseDiskRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {DISK_COLUMNS} FROM base_disks ORDER BY created_at_ms, rowid"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map([], BaseDiskRecord::from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Forgets the base disk of `digest` (absent already: nothing to do).
    pub fn remove_base_disk(&self, digest: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM base_disks WHERE digest = ?1", [digest])
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
