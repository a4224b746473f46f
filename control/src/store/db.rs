//! The SQLite database: schema, pragmas, one writer connection and a small pool of readers.
//! WAL lets readers (the snapshot feed) run while the writer commits; `synchronous=FULL` makes
//! every acknowledged write survive a crash or power loss.

use crate::secrets;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value ANY NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS keys (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    hash             TEXT NOT NULL,
    prefix           TEXT NOT NULL,
    last4            TEXT NOT NULL,
    name             TEXT NOT NULL,
    environment      TEXT NOT NULL,
    team             TEXT NOT NULL,
    scopes           TEXT NOT NULL,
    allowed_ips      TEXT NOT NULL,
    expires_at       TEXT,
    active           INTEGER NOT NULL,
    plan             TEXT NOT NULL,
    limit_per_minute INTEGER,
    limit_per_hour   INTEGER,
    limit_per_day    INTEGER,
    limit_concurrent INTEGER,
    limit_per_month  INTEGER,
    quota_exceeded_until TEXT,
    last_used_at     TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    rotated_from     TEXT,
    deleted          INTEGER NOT NULL DEFAULT 0,
    updated_version  INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS keys_by_updated_version ON keys (updated_version);
-- One row per key, hour and outcome: `code` is 'ALLOWED' or a denial code. Rows rather than a
-- column per code because proxies may report codes we do not know yet, and most hours have no
-- denials at all, so zero counts take no space. `hour_start` is Unix seconds (UTC), which
-- makes day and month sums plain range scans of the primary key.
CREATE TABLE IF NOT EXISTS usage_hourly (
    key_id     TEXT NOT NULL,
    hour_start INTEGER NOT NULL,
    code       TEXT NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (key_id, hour_start, code)
) STRICT, WITHOUT ROWID;
-- For pruning and for reads across all keys, which scan by hour rather than by key.
CREATE INDEX IF NOT EXISTS usage_hourly_by_hour ON usage_hourly (hour_start);
-- Hours older than the usage retention, rolled up into UTC days (`day_start`, Unix seconds).
CREATE TABLE IF NOT EXISTS usage_daily (
    key_id    TEXT NOT NULL,
    day_start INTEGER NOT NULL,
    code      TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (key_id, day_start, code)
) STRICT, WITHOUT ROWID;
-- Usage batches already counted, so a retried batch is not counted twice.
CREATE TABLE IF NOT EXISTS usage_batches (
    batch_id     TEXT PRIMARY KEY,
    proxy_id     TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    accepted     INTEGER NOT NULL,
    unknown_keys INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS usage_batches_by_received_at ON usage_batches (received_at);
-- Management tokens for the admin API; only the SHA-256 (hex) of each secret is kept.
CREATE TABLE IF NOT EXISTS tokens (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    hash         TEXT NOT NULL UNIQUE,
    last4        TEXT NOT NULL,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    team         TEXT,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT,
    rotated_from TEXT
) STRICT;
-- Every change made through the admin API, written in the transaction that makes it.
-- `team` is the team of what was changed, so team tokens read only their team's entries.
CREATE TABLE IF NOT EXISTS audit_log (
    seq        INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    token_id   TEXT NOT NULL,
    token_name TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    team       TEXT,
    changes    TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS audit_log_by_target ON audit_log (target, seq);
";

/// Columns added to `keys` after its first release, with their types; databases made before
/// get them on open (`CREATE TABLE IF NOT EXISTS` leaves an existing table as it was).
const ADDED_KEY_COLUMNS: [(&str, &str); 3] = [
    ("limit_per_month", "INTEGER"),
    ("quota_exceeded_until", "TEXT"),
    ("last_used_at", "TEXT"),
];

/// Idle reader connections kept for reuse; more are opened under load and closed after.
const MAX_IDLE_READERS: usize = 8;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Store {
    path: PathBuf,
    epoch: String,
    writer: Mutex<Connection>,
    idle_readers: Mutex<Vec<Connection>>,
    /// The version of the last commit, for long polls waiting on a change.
    committed_version: watch::Sender<u64>,
}

/// A lock whose holder panicked still guards a consistent connection: the panicking
/// transaction was rolled back when it dropped.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, rusqlite::Error> {
        let mut writer = Connection::open(path)?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        let journal_mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "could not switch {} to WAL mode (got {journal_mode})",
                path.display()
            )));
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        let (epoch, version) = {
            let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(SCHEMA)?;
            add_missing_key_columns(&tx)?;
            crate::store::plans::ensure_plans(&tx)?;
            let epoch = ensure_meta(&tx)?;
            let version = current_version(&tx)?;
            tx.commit()?;
            (epoch, version)
        };
        Ok(Store {
            path: path.to_path_buf(),
            epoch,
            writer: Mutex::new(writer),
            idle_readers: Mutex::new(Vec::new()),
            committed_version: watch::Sender::new(version),
        })
    }

    /// Identifies this database; versions from another epoch are not comparable.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Watches the committed version; it changes after every committed key change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.committed_version.subscribe()
    }

    /// Runs `work` in an immediate transaction and commits it before returning, so nothing
    /// acknowledged afterwards can be lost; then publishes the committed version.
    pub fn write<T, E: From<rusqlite::Error>>(
        &self,
        work: impl FnOnce(&Transaction) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut connection = lock(&self.writer);
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let result = work(&tx)?;
        let version = current_version(&tx)?;
        tx.commit()?;
        self.committed_version.send_if_modified(|published| {
            let moved = version > *published;
            *published = (*published).max(version);
            moved
        });
        Ok(result)
    }

    /// Runs `work` in a read transaction: one consistent view of the database.
    pub fn read<T, E: From<rusqlite::Error>>(
        &self,
        work: impl FnOnce(&Transaction) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut connection = match lock(&self.idle_readers).pop() {
            Some(connection) => connection,
            None => self.open_reader()?,
        };
        let result = {
            let tx = connection.transaction()?;
            work(&tx)
        };
        let mut idle = lock(&self.idle_readers);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(connection);
        }
        result
    }

    fn open_reader(&self) -> Result<Connection, rusqlite::Error> {
        let connection = Connection::open(&self.path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "query_only", "ON")?;
        Ok(connection)
    }
}

fn add_missing_key_columns(tx: &Transaction) -> Result<(), rusqlite::Error> {
    let existing = tx
        .prepare("SELECT name FROM pragma_table_info('keys')")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    for (column, sql_type) in ADDED_KEY_COLUMNS {
        if !existing.iter().any(|name| name == column) {
            tx.execute_batch(&format!("ALTER TABLE keys ADD COLUMN {column} {sql_type}"))?;
        }
    }
    Ok(())
}

/// Creates the epoch and version on first start; returns the epoch.
fn ensure_meta(tx: &Transaction) -> Result<String, rusqlite::Error> {
    let existing: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE name = 'epoch'", [], |row| {
            row.get(0)
        })
        .optional()?;
    if let Some(epoch) = existing {
        return Ok(epoch);
    }
    let epoch = secrets::random_base62(16)
        .map_err(|error| rusqlite::Error::InvalidParameterName(format!("random epoch: {error}")))?;
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('epoch', ?1), ('version', 0)",
        params![epoch],
    )?;
    Ok(epoch)
}

/// The version of the last committed key change.
pub fn current_version(tx: &Transaction) -> Result<u64, rusqlite::Error> {
    let version: i64 =
        tx.query_row("SELECT value FROM meta WHERE name = 'version'", [], |row| {
            row.get(0)
        })?;
    Ok(u64::try_from(version).unwrap_or(0))
}

/// Moves the version on by one for the change this transaction makes; returns the new version.
pub fn bump_version(tx: &Transaction) -> Result<u64, rusqlite::Error> {
    let version: i64 = tx.query_row(
        "UPDATE meta SET value = value + 1 WHERE name = 'version' RETURNING value",
        [],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(version).unwrap_or(0))
}

/// A new database in its own temporary folder, for tests: `module` and `name` keep tests that
/// run at once apart. Returns the store and the folder to remove afterwards.
#[cfg(test)]
pub fn temp_store(module: &str, name: &str) -> (Store, PathBuf) {
    let dir = std::env::temp_dir().join(format!("keygate-{module}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (Store::open(&dir.join("k.db")).unwrap(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_epoch_and_counts_versions_across_reopen() {
        let dir = std::env::temp_dir().join(format!("keygate-db-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("meta.db");
        let _ = std::fs::remove_file(&path);
        let store = Store::open(&path).unwrap();
        let epoch = store.epoch().to_string();
        assert_eq!(store.write(bump_version).unwrap(), 1);
        assert_eq!(store.write(bump_version).unwrap(), 2);
        drop(store);
        let reopened = Store::open(&path).unwrap();
        assert_eq!(reopened.epoch(), epoch);
        assert_eq!(reopened.read(current_version).unwrap(), 2);
        assert_eq!(*reopened.subscribe().borrow(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn adds_new_key_columns_to_an_older_database() {
        let dir = std::env::temp_dir().join(format!("keygate-db-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.db");
        let _ = std::fs::remove_file(&path);
        let older_schema = SCHEMA
            .replace("    limit_per_month  INTEGER,\n", "")
            .replace("    quota_exceeded_until TEXT,\n", "")
            .replace("    last_used_at     TEXT,\n", "");
        assert_ne!(older_schema, SCHEMA);
        Connection::open(&path)
            .unwrap()
            .execute_batch(&older_schema)
            .unwrap();
        let store = Store::open(&path).unwrap();
        let columns: Vec<String> = store
            .read(|tx| {
                tx.prepare("SELECT name FROM pragma_table_info('keys')")?
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<Vec<_>, rusqlite::Error>>()
            })
            .unwrap();
        for (column, _) in ADDED_KEY_COLUMNS {
            assert!(columns.iter().any(|name| name == column), "{column}");
        }
        drop(store);
        Store::open(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
