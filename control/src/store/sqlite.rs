//! The SQLite backend: one file, one writer connection and a small pool of readers. WAL lets
//! readers (the snapshot feed) run while the writer commits; `synchronous=FULL` makes every
//! acknowledged write survive a crash or power loss. One process only: see `postgres.rs` for
//! several replicas.

use crate::store::migrate;
use crate::store::sql::{Error, Tx};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Idle reader connections kept for reuse; more are opened under load and closed after.
const MAX_IDLE_READERS: usize = 8;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Columns added to `keys` before migrations were versioned. A database from then has no
/// migration history; it gets them once when adopted (see `adopt_unversioned`).
const PRE_MIGRATION_KEY_COLUMNS: [(&str, &str); 3] = [
    ("limit_per_month", "INTEGER"),
    ("quota_exceeded_until", "TEXT"),
    ("last_used_at", "TEXT"),
];

pub struct SqliteBackend {
    path: PathBuf,
    writer: Mutex<Connection>,
    idle_readers: Mutex<Vec<Connection>>,
}

/// A lock whose holder panicked still guards a consistent connection: the panicking
/// transaction was rolled back when it dropped.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path` and migrates it. Also says whether
    /// the plans table is new, so the caller seeds it.
    pub fn open(path: &Path) -> Result<(SqliteBackend, bool), Error> {
        let mut writer = Connection::open(path)?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        let journal_mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Schema(format!(
                "could not switch {} to WAL mode (got {journal_mode})",
                path.display()
            )));
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        let plans_are_new = !table_exists(&writer, "plans")?;
        adopt_unversioned(&writer)?;
        migrate::sqlite(&mut writer)?;
        Ok((
            SqliteBackend {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                idle_readers: Mutex::new(Vec::new()),
            },
            plans_are_new,
        ))
    }

    /// Runs `work` in an immediate transaction (the one writer) and commits it.
    pub fn write<T, E: From<Error>>(&self, work: impl FnOnce(&Tx) -> Result<T, E>) -> Result<T, E> {
        let mut connection = lock(&self.writer);
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Error::from)?;
        let result = work(&Tx::sqlite(&tx))?;
        tx.commit().map_err(Error::from)?;
        Ok(result)
    }

    /// Runs `work` in a read transaction: one consistent view of the database.
    pub fn read<T, E: From<Error>>(&self, work: impl FnOnce(&Tx) -> Result<T, E>) -> Result<T, E> {
        let mut connection = match lock(&self.idle_readers).pop() {
            Some(connection) => connection,
            None => self.open_reader()?,
        };
        let result = {
            let tx = connection.transaction().map_err(Error::from)?;
            let view = Tx::sqlite(&tx);
            work(&view)
        };
        let mut idle = lock(&self.idle_readers);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(connection);
        }
        result
    }

    fn open_reader(&self) -> Result<Connection, Error> {
        let connection = Connection::open(&self.path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "query_only", "ON")?;
        Ok(connection)
    }
}

fn table_exists(connection: &Connection, table: &str) -> Result<bool, Error> {
    Ok(connection
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// A database made before migrations were versioned has the tables but no history, and may
/// lack the columns added in that time. Version 1 creates only what is missing (`IF NOT
/// EXISTS`), so such a database needs those columns added once, here; afterwards every change
/// is a numbered migration.
fn adopt_unversioned(connection: &Connection) -> Result<(), Error> {
    if !table_exists(connection, "keys")? || table_exists(connection, "refinery_schema_history")? {
        return Ok(());
    }
    let existing = connection
        .prepare("SELECT name FROM pragma_table_info('keys')")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    for (column, sql_type) in PRE_MIGRATION_KEY_COLUMNS {
        if !existing.iter().any(|name| name == column) {
            connection
                .execute_batch(&format!("ALTER TABLE keys ADD COLUMN {column} {sql_type}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopts_a_database_from_before_versioned_migrations() {
        let dir = std::env::temp_dir().join(format!("keygate-sqlite-adopt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.db");
        let _ = std::fs::remove_file(&path);
        let schema = include_str!("../../migrations/sqlite/V1__initial.sql");
        let older_schema = schema
            .replace("    limit_per_month  INTEGER,\n", "")
            .replace("    quota_exceeded_until TEXT,\n", "")
            .replace("    last_used_at     TEXT,\n", "");
        assert_ne!(older_schema, schema);
        Connection::open(&path)
            .unwrap()
            .execute_batch(&older_schema)
            .unwrap();
        let (backend, plans_are_new) = SqliteBackend::open(&path).unwrap();
        assert!(!plans_are_new);
        let columns: Vec<String> = backend
            .read(|tx| {
                tx.query_map("SELECT name FROM pragma_table_info('keys')", (), |row| {
                    row.get(0)
                })
            })
            .unwrap();
        for (column, _) in PRE_MIGRATION_KEY_COLUMNS {
            assert!(columns.iter().any(|name| name == column), "{column}");
        }
        drop(backend);
        SqliteBackend::open(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_schema_newer_than_it_knows() {
        let dir = std::env::temp_dir().join(format!("keygate-sqlite-newer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("newer.db");
        let _ = std::fs::remove_file(&path);
        drop(SqliteBackend::open(&path).unwrap());
        let future = migrate::known_version() + 1;
        Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
                 VALUES (?1, 'from_the_future', '2030-01-01T00:00:00Z', '0')",
                [future],
            )
            .unwrap();
        let error = SqliteBackend::open(&path)
            .err()
            .expect("a newer schema is refused");
        let message = error.to_string();
        assert!(message.contains("newer keygate-control"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
