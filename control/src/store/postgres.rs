//! The PostgreSQL backend, for several `keygate-control` replicas sharing one database.
//!
//! Change feed order. Every write transaction first locks the row holding the feed version
//! (`SELECT … FOR UPDATE`), so writers on every replica run one at a time, exactly as SQLite's
//! single writer does: a transaction can only take version v+1 after the one that took v has
//! committed, so versions commit in order and a follower that has seen version 10 can never
//! later meet a version-9 row. A sequence would not do: its numbers commit out of order.
//!
//! Wake-ups. A write that moves the version sends `NOTIFY keygate_version` (delivered at
//! commit). Each replica keeps one connection listening and re-reads the version on every
//! notification and at least every second, so a lost notification or a pooler that breaks
//! LISTEN costs at most a second, never a missed change.
//!
//! Deadlines. Connections are taken with a 3 s limit and statements and lock waits end after
//! 5 s, so a stopped or hung database answers `Error::Unavailable` (503) instead of hanging.

use crate::store::migrate;
use crate::store::sql::{params, Error, Tx};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Config, IsolationLevel, NoTls};
use r2d2_postgres::PostgresConnectionManager;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const POOL_SIZE: u32 = 16;
/// Per statement and per lock wait, set in every transaction.
const STATEMENT_DEADLINE: &str =
    "SET LOCAL statement_timeout = 5000; SET LOCAL lock_timeout = 5000";
/// The longest a replica goes without re-reading the version if no notification arrives.
const RECHECK: Duration = Duration::from_secs(1);
const CHANNEL: &str = "keygate_version";
/// Held while migrating, so replicas starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x6b65_7967_6174_6501;

pub struct PostgresBackend {
    pool: r2d2::Pool<PostgresConnectionManager<NoTls>>,
}

/// The connection settings from a `postgres://` URL, with our deadlines.
pub fn config(url: &str) -> Result<Config, Error> {
    let mut config =
        Config::from_str(url).map_err(|error| Error::Schema(format!("--database-url: {error}")))?;
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_user_timeout(Duration::from_secs(10))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10));
    if config.get_application_name().is_none() {
        config.application_name("keygate-control");
    }
    Ok(config)
}

impl PostgresBackend {
    /// Connects, migrates (one replica at a time) and says whether the plans table is new.
    pub fn connect(url: &str) -> Result<(PostgresBackend, bool), Error> {
        let config = config(url)?;
        let mut client = config.connect(NoTls)?;
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
        let plans_are_new: bool = client
            .query_one("SELECT to_regclass('plans') IS NULL", &[])?
            .try_get(0)?;
        migrate::postgres(&mut client)?;
        client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .build_unchecked(manager);
        Ok((PostgresBackend { pool }, plans_are_new))
    }

    /// Runs `work` in a transaction holding the version lock, and commits it; a write that
    /// moved the version notifies the other replicas (delivered at commit). `work` returns its
    /// result with the version it leaves, which is compared with the one found under the lock.
    pub fn write<T, E: From<Error>>(
        &self,
        work: impl FnOnce(&Tx) -> Result<(T, u64), E>,
        current_version: impl Fn(&Tx) -> Result<u64, Error>,
    ) -> Result<(T, u64), E> {
        self.write_outside_feed(|tx| {
            tx.execute(
                "SELECT value FROM meta WHERE name = 'version' FOR UPDATE",
                (),
            )?;
            let before = current_version(tx)?;
            let (result, after) = work(tx)?;
            if after > before {
                tx.execute(
                    "SELECT pg_notify(?1, ?2)",
                    params![CHANNEL, after.to_string()],
                )?;
            }
            Ok((result, after))
        })
    }

    /// Runs `work` in a transaction that does not take the version lock: for writes that are no
    /// part of the change feed and commute (fleet rate-limit counts), so they never wait behind
    /// key changes or make key changes wait.
    pub fn write_outside_feed<T, E: From<Error>>(
        &self,
        work: impl FnOnce(&Tx) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut connection = self.pool.get().map_err(Error::from)?;
        let transaction = connection.transaction().map_err(Error::from)?;
        run_and_commit(Tx::postgres(transaction), work)
    }

    /// Runs `work` in a read-only repeatable-read transaction: one consistent view.
    pub fn read<T, E: From<Error>>(&self, work: impl FnOnce(&Tx) -> Result<T, E>) -> Result<T, E> {
        let mut connection = self.pool.get().map_err(Error::from)?;
        let transaction = connection
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(Error::from)?;
        run_and_commit(Tx::postgres(transaction), work)
    }
}

/// Sets this transaction's deadlines, runs `work` and commits (a failure rolls back on drop).
fn run_and_commit<T, E: From<Error>>(
    tx: Tx<'_>,
    work: impl FnOnce(&Tx) -> Result<T, E>,
) -> Result<T, E> {
    tx.execute_batch(STATEMENT_DEADLINE)?;
    let result = work(&tx)?;
    if let Some(transaction) = tx.into_postgres() {
        transaction.commit().map_err(Error::from)?;
    }
    Ok(result)
}

/// Publishes versions committed by any replica on `published` until it is dropped: on each
/// notification, and every `RECHECK` in case one was lost. Reconnects after errors.
pub fn follow_versions(url: &str, published: &Arc<watch::Sender<u64>>) -> Result<(), Error> {
    let config = config(url)?;
    let published = Arc::downgrade(published);
    std::thread::Builder::new()
        .name("keygate-listen".into())
        .spawn(move || {
            while published.strong_count() > 0 {
                // An error ends one connection; the next attempt follows after a pause.
                let _ = listen(&config, &published);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .map_err(|error| Error::Unavailable(format!("listener thread: {error}")))?;
    Ok(())
}

fn listen(config: &Config, published: &Weak<watch::Sender<u64>>) -> Result<(), Error> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    loop {
        let row = client.query_one(
            "SELECT CAST(value AS BIGINT) FROM meta WHERE name = 'version'",
            &[],
        )?;
        let version = u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0);
        let Some(sender) = published.upgrade() else {
            return Ok(());
        };
        sender.send_if_modified(|current| {
            let moved = version > *current;
            *current = (*current).max(version);
            moved
        });
        drop(sender);
        let mut notifications = client.notifications();
        // Wait for one notification or the re-check, then take any others already queued.
        if notifications.timeout_iter(RECHECK).next()?.is_some() {
            while notifications.iter().next()?.is_some() {}
        }
    }
}
