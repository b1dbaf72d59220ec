//! Box records: create, find, change, remove.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::record::BOX_COLUMNS;
use super::{BoxRecord, StateDb, to_sql_int};
use crate::error::{Error, Result};

/// The length of a box id in hex digits (a sha256).
pub const ID_LEN: usize = 64;
/// The shortest id prefix that names a box: fewer digits match too much by chance.
pub const MIN_ID_PREFIX: usize = 4;
/// How many candidates an ambiguous prefix error lists.
const MAX_CANDIDATES_SHOWN: usize = 8;
/// Display length of an id in messages, as `boxlite ls` shows it.
const SHORT_ID_LEN: usize = 12;

impl StateDb {
    /// Records a new box; a taken name is [`Error::NameInUse`] (checked and written in one
    /// write transaction, so of two processes creating one name, exactly one wins).
    #[cfg(test)]
    pub fn insert_box(&self, rec: &BoxRecord) -> Result<()> {
        self.insert(rec, false)
    }

    /// Records a new box as [`insert_box`](Self::insert_box) does, but incomplete: it holds
    /// its name and id, and nothing else sees it (lookups, lists, updates) until
    /// [`complete_box`](Self::complete_box). Its creator holds the box's lock meanwhile.
    pub fn insert_incomplete_box(&self, rec: &BoxRecord) -> Result<()> {
        self.insert(rec, true)
    }

    fn insert(&self, rec: &BoxRecord, incomplete: bool) -> Result<()> {
        validate_id(&rec.id)?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        if let Some(other) = id_named(&tx, &rec.name).map_err(|e| self.err(e))? {
            return Err(Error::NameInUse(rec.name.clone(), other));
        }
        if completeness(&tx, &rec.id)
            .map_err(|e| self.err(e))?
            .is_some()
        {
            return Err(Error::InvalidInput(format!(
                "a box with id {} already exists",
                rec.id
            )));
        }
        let sql = format!(
            "INSERT INTO boxes ({BOX_COLUMNS}, incomplete) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
             {})",
            i32::from(incomplete)
        );
        write_row(&tx, &sql, rec).map_err(|e| self.wrap(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Makes incomplete box `id` visible: its directory and disk exist.
    pub fn complete_box(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        let changed = conn
            .execute(
                "UPDATE boxes SET incomplete = 0 WHERE id = ?1 AND incomplete = 1",
                [id],
            )
            .map_err(|e| self.err(e))?;
        if changed == 0 {
            return Err(Error::NoSuchBox(id.to_string()));
        }
        Ok(())
    }

    /// Forgets box `id` if it is still incomplete (its creator died: the caller holds the
    /// box's lock); whether it did.
    pub fn remove_incomplete_box(&self, id: &str) -> Result<bool> {
        let conn = self.conn();
        let removed = conn
            .execute("DELETE FROM boxes WHERE id = ?1 AND incomplete = 1", [id])
            .map_err(|e| self.err(e))?;
        Ok(removed > 0)
    }

    /// Whether box `id` has a row, and whether it is incomplete: `None` for no row,
    /// `Some(true)` for an incomplete one.
    pub fn box_completeness(&self, id: &str) -> Result<Option<bool>> {
        completeness(&self.conn(), id).map_err(|e| self.err(e))
    }

    /// The id of every row, complete or not, and whether it is incomplete: what owns the
    /// directories under `boxes/`.
    pub fn all_box_ids(&self) -> Result<Vec<(String, bool)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, incomplete FROM boxes")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? != 0)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// The box with exactly this id, else exactly this name, else the one box whose id starts
    /// with this prefix (at least [`MIN_ID_PREFIX`] hex digits).
    pub fn get_box(&self, key: &str) -> Result<BoxRecord> {
        let conn = self.conn();
        if let Some(rec) = find_exact(&conn, key).map_err(|e| self.err(e))? {
            return Ok(rec);
        }
        let by_name = format!("SELECT {BOX_COLUMNS} FROM boxes WHERE name = ?1 AND incomplete = 0");
        if let Some(rec) = conn
            .query_row(&by_name, [key], BoxRecord::from_row)
            .optional()
            .map_err(|e| self.err(e))?
        {
            return Ok(rec);
        }
        let prefix = key.to_ascii_lowercase();
        if prefix.len() < MIN_ID_PREFIX || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NoSuchBox(key.to_string()));
        }
        let by_prefix = format!(
            "SELECT {BOX_COLUMNS} FROM boxes WHERE substr(id, 1, ?1) = ?2 AND incomplete = 0 \
             ORDER BY created_at_ms, rowid LIMIT ?3"
        );
        let mut stmt = conn.prepare(&by_prefix).map_err(|e| self.err(e))?;
        let mut found = stmt
            .query_map(
                params![prefix.len() as i64, prefix, MAX_CANDIDATES_SHOWN as i64 + 1],
                BoxRecord::from_row,
            )
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        if found.len() > 1 {
            return Err(ambiguous(key, &found, found.len() > MAX_CANDIDATES_SHOWN));
        }
        found.pop().ok_or_else(|| Error::NoSuchBox(key.to_string()))
    }

    /// Every box, oldest first.
    pub fn list_boxes(&self) -> Result<Vec<BoxRecord>> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {BOX_COLUMNS} FROM boxes WHERE incomplete = 0 ORDER BY created_at_ms, rowid"
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        stmt.query_map([], BoxRecord::from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Reads box `id`, lets `f` change it, and writes it back, all in one write transaction:
    /// no other process's change can slip in between. An error from `f` (or a new name that
    /// is taken) rolls everything back. Returns the record as written.
    pub fn update_box(
        &self,
        id: &str,
        f: impl FnOnce(&mut BoxRecord) -> Result<()>,
    ) -> Result<BoxRecord> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let mut rec = find_exact(&tx, id)
            .map_err(|e| self.err(e))?
            .ok_or_else(|| Error::NoSuchBox(id.to_string()))?;
        f(&mut rec)?;
        if rec.id != id {
            return Err(Error::InvalidInput(format!(
                "box {id}: a box's id never changes (asked to become {})",
                rec.id
            )));
        }
        if let Some(other) = id_named(&tx, &rec.name).map_err(|e| self.err(e))?
            && other != id
        {
            return Err(Error::NameInUse(rec.name.clone(), other));
        }
        let sql = "UPDATE boxes SET id = ?1, name = ?2, image = ?3, image_digest = ?4, \
             options = ?5, state = ?6, created_at_ms = ?7, started_at_ms = ?8, \
             stopped_at_ms = ?9, engine = ?10, supervisor_pid = ?11, vm_pid = ?12, \
             boot_ms = ?13, exec_count = ?14, bytes_streamed = ?15, exit_code = ?16, \
             reason = ?17 WHERE id = ?1 AND incomplete = 0";
        write_row(&tx, sql, &rec).map_err(|e| self.wrap(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(rec)
    }

    /// Forgets box `id`.
    pub fn remove_box(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        let removed = conn
            .execute("DELETE FROM boxes WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        if removed == 0 {
            return Err(Error::NoSuchBox(id.to_string()));
        }
        Ok(())
    }

    /// Adds `execs` commands and `bytes` streamed to box `id`'s counters (one atomic
    /// statement, saturating at SQLite's integer limit).
    pub fn add_exec_stats(&self, id: &str, execs: u64, bytes: u64) -> Result<()> {
        let conn = self.conn();
        let changed = conn
            .execute(
                "UPDATE boxes SET \
                 exec_count = CASE WHEN exec_count > 9223372036854775807 - ?2 \
                     THEN 9223372036854775807 ELSE exec_count + ?2 END, \
                 bytes_streamed = CASE WHEN bytes_streamed > 9223372036854775807 - ?3 \
                     THEN 9223372036854775807 ELSE bytes_streamed + ?3 END \
                 WHERE id = ?1",
                params![id, to_sql_int(execs), to_sql_int(bytes)],
            )
            .map_err(|e| self.err(e))?;
        if changed == 0 {
            return Err(Error::NoSuchBox(id.to_string()));
        }
        Ok(())
    }

    /// The ids of the boxes made from the image with manifest digest `digest`, oldest first
    /// (incomplete ones are not: their creator holds the image's base-disk lock until its
    /// box is complete, so only a dead creator's are left to see).
    pub fn boxes_using_image(&self, digest: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id FROM boxes WHERE image_digest = ?1 AND incomplete = 0 \
                 ORDER BY created_at_ms, rowid",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([digest], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Wraps an error from writing a row: SQLite's with the path, ours as they are.
    fn wrap(&self, e: WriteError) -> Error {
        match e {
            WriteError::Sql(e) => self.err(e),
            WriteError::Json(e) => Error::InvalidInput(format!("box options: {e}")),
        }
    }
}

/// Why writing a row failed.
enum WriteError {
    Sql(rusqlite::Error),
    Json(serde_json::Error),
}

/// Runs `sql` (an INSERT or UPDATE with the 17 columns as `?1`…`?17`) for `rec`.
fn write_row(tx: &Transaction<'_>, sql: &str, rec: &BoxRecord) -> Result<(), WriteError> {
    let options = serde_json::to_string(&rec.options).map_err(WriteError::Json)?;
    tx.execute(
        sql,
        params![
            rec.id,
            rec.name,
            rec.image,
            rec.image_digest,
            options,
            rec.state.as_str(),
            to_sql_int(rec.created_at_ms),
            rec.started_at_ms.map(to_sql_int),
            rec.stopped_at_ms.map(to_sql_int),
            rec.engine,
            rec.supervisor_pid,
            rec.vm_pid,
            rec.boot_ms,
            to_sql_int(rec.exec_count),
            to_sql_int(rec.bytes_streamed),
            rec.exit_code,
            rec.reason,
        ],
    )
    .map_err(WriteError::Sql)?;
    Ok(())
}

/// Checks a box id: [`ID_LEN`] lowercase hex digits (prefix lookup relies on it).
fn validate_id(id: &str) -> Result<()> {
    if id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "box id {id:?}: must be {ID_LEN} lowercase hex digits"
        )))
    }
}

/// The complete box with exactly this id.
fn find_exact(conn: &Connection, id: &str) -> rusqlite::Result<Option<BoxRecord>> {
    let sql = format!("SELECT {BOX_COLUMNS} FROM boxes WHERE id = ?1 AND incomplete = 0");
    conn.query_row(&sql, [id], BoxRecord::from_row).optional()
}

/// Whether a row has id `id` (`None`: no), and whether it is incomplete.
fn completeness(conn: &Connection, id: &str) -> rusqlite::Result<Option<bool>> {
    conn.query_row("SELECT incomplete FROM boxes WHERE id = ?1", [id], |row| {
        Ok(row.get::<_, i64>(0)? != 0)
    })
    .optional()
}

/// The id of the box named `name`.
fn id_named(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT id FROM boxes WHERE name = ?1", [name], |row| {
        row.get(0)
    })
    .optional()
}

/// The error for a prefix that matches several boxes, naming them.
fn ambiguous(key: &str, found: &[BoxRecord], more: bool) -> Error {
    let names: Vec<String> = found
        .iter()
        .take(MAX_CANDIDATES_SHOWN)
        .map(|r| {
            // Enough digits to tell the candidates apart beyond what was typed.
            let shown = r.id.get(..SHORT_ID_LEN.max(key.len() + 4)).unwrap_or(&r.id);
            format!("{shown} ({})", r.name)
        })
        .collect();
    Error::InvalidInput(format!(
        "box id prefix {key:?} is ambiguous: it matches {}{}; give more digits or the name",
        names.join(", "),
        if more { " and more" } else { "" }
    ))
}
