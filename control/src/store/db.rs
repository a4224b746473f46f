//! The store the API handlers use, whichever database is behind it: SQLite (one file, one
//! process) or PostgreSQL (any number of replicas). Handlers call `read` and `write` with
//! closures over a `Tx`; they never learn which backend runs them.

use crate::domain::secrets;
use crate::store::postgres::{self, PostgresBackend};
use crate::store::sql::{params, Error, Tx};
use crate::store::sqlite::SqliteBackend;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// Where the keys live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    /// A `postgres://` URL.
    Postgres(String),
}

impl Location {
    /// For logs: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => match url::Url::parse(url) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("***"));
                    }
                    parsed.to_string()
                }
                Err(_) => "postgres (unparsable URL)".into(),
            },
        }
    }
}

enum Backend {
    Sqlite(SqliteBackend),
    Postgres(PostgresBackend),
}

pub struct Store {
    backend: Backend,
    epoch: String,
    /// The version of the last commit seen (by this replica or, on PostgreSQL, any), for long
    /// polls waiting on a change.
    committed_version: Arc<watch::Sender<u64>>,
}

impl Store {
    /// Runs blocking database work on tokio's blocking pool, off the async workers. The outer
    /// error is the task's (it panicked or was cancelled); the inner one is the work's own.
    pub async fn run_blocking<T, E>(
        self: &Arc<Self>,
        work: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<Result<T, E>, tokio::task::JoinError>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || work(&store)).await
    }

    /// Opens (creating if needed) the SQLite database at `path`.
    pub fn open(path: &Path) -> Result<Store, Error> {
        let (backend, plans_are_new) = SqliteBackend::open(path)?;
        Store::start(Backend::Sqlite(backend), plans_are_new)
    }

    /// Connects to PostgreSQL at `url`, migrating its schema if needed.
    pub fn connect(url: &str) -> Result<Store, Error> {
        let (backend, plans_are_new) = PostgresBackend::connect(url)?;
        let store = Store::start(Backend::Postgres(backend), plans_are_new)?;
        postgres::follow_versions(url, &store.committed_version)?;
        Ok(store)
    }

    pub fn open_location(location: &Location) -> Result<Store, Error> {
        match location {
            Location::Sqlite(path) => Store::open(path),
            Location::Postgres(url) => Store::connect(url),
        }
    }

    fn start(backend: Backend, plans_are_new: bool) -> Result<Store, Error> {
        let mut store = Store {
            backend,
            epoch: String::new(),
            committed_version: Arc::new(watch::Sender::new(0)),
        };
        let (epoch, version) = store.write(|tx| {
            if plans_are_new {
                crate::store::plans::seed(tx)?;
            }
            Ok::<_, Error>((ensure_meta(tx)?, current_version(tx)?))
        })?;
        store.epoch = epoch;
        store.committed_version.send_replace(version);
        Ok(store)
    }

    /// Identifies this database; versions from another epoch are not comparable.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Watches the committed version; it changes after every committed key change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.committed_version.subscribe()
    }

    /// Runs `work` in a write transaction and commits it before returning, so nothing
    /// acknowledged afterwards can be lost; then publishes the committed version.
    pub fn write<T, E: From<Error>>(&self, work: impl FnOnce(&Tx) -> Result<T, E>) -> Result<T, E> {
        let with_version = |tx: &Tx| -> Result<(T, u64), E> {
            let result = work(tx)?;
            Ok((result, current_version(tx)?))
        };
        let (result, version) = match &self.backend {
            Backend::Sqlite(backend) => backend.write(with_version)?,
            Backend::Postgres(backend) => backend.write(with_version, current_version)?,
        };
        self.committed_version.send_if_modified(|published| {
            let moved = version > *published;
            *published = (*published).max(version);
            moved
        });
        Ok(result)
    }

    /// Whether several replicas may share this database (PostgreSQL), so state they must agree
    /// on belongs in it rather than in one process's memory.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Runs `work` in a write transaction that is no part of the change feed: it must not
    /// change keys or the version. On PostgreSQL it skips the version lock, so such writes
    /// (fleet rate-limit counts, many a second) neither wait for key changes nor delay them.
    pub fn write_outside_feed<T, E: From<Error>>(
        &self,
        work: impl FnOnce(&Tx) -> Result<T, E>,
    ) -> Result<T, E> {
        match &self.backend {
            Backend::Sqlite(backend) => backend.write(work),
            Backend::Postgres(backend) => backend.write_outside_feed(work),
        }
    }

    /// Runs `work` in a read transaction: one consistent view of the database.
    pub fn read<T, E: From<Error>>(&self, work: impl FnOnce(&Tx) -> Result<T, E>) -> Result<T, E> {
        match &self.backend {
            Backend::Sqlite(backend) => backend.read(work),
            Backend::Postgres(backend) => backend.read(work),
        }
    }
}

/// Creates the epoch and version on first start; returns the epoch. Replicas starting together
/// agree: the first insert wins and the others read it.
fn ensure_meta(tx: &Tx) -> Result<String, Error> {
    let epoch = secrets::random_base62(16)
        .map_err(|error| Error::Schema(format!("random epoch: {error}")))?;
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('epoch', ?1), ('version', '0')
         ON CONFLICT (name) DO NOTHING",
        params![epoch],
    )?;
    tx.query_row("SELECT value FROM meta WHERE name = 'epoch'", (), |row| {
        row.get(0)
    })
}

/// The version of the last committed key change.
pub fn current_version(tx: &Tx) -> Result<u64, Error> {
    let version: i64 = tx.query_row(
        "SELECT CAST(value AS BIGINT) FROM meta WHERE name = 'version'",
        (),
        |row| row.get(0),
    )?;
    Ok(u64::try_from(version).unwrap_or(0))
}

/// Moves the version on by one for the change this transaction makes; returns the new version.
pub fn bump_version(tx: &Tx) -> Result<u64, Error> {
    let version: i64 = tx.query_row(
        "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE name = 'version'
         RETURNING CAST(value AS BIGINT)",
        (),
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
    fn describes_a_postgres_location_without_its_password() {
        let location = Location::Postgres("postgres://keygate:s3cret@db:5432/keys".into());
        let described = location.describe();
        assert!(!described.contains("s3cret"), "{described}");
        assert!(described.contains("db:5432/keys"), "{described}");
    }
}
