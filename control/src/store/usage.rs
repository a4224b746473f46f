//! Usage rows: counting a proxy's batch once, and reading a key's hours back.

use crate::store::db::Store;
use crate::store::keys::{self, StoredKey};
use crate::store::quota;
use crate::usage_report::{UsageBatch, ALLOWED_CODE};
use chrono::{DateTime, Duration, Utc};
use rusqlite::{named_params, OptionalExtension, Transaction};
use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// How long a batch id is remembered; a proxy retries within seconds, not days.
const BATCH_ID_RETENTION: Duration = Duration::days(7);

/// What a usage POST did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Reports counted (for keys that exist and are not deleted).
    pub accepted: u32,
    /// Reports dropped because their key is unknown or deleted.
    pub unknown_keys: u32,
    /// The batch id was seen before: nothing was counted now, the numbers are the first time's.
    pub duplicate: bool,
}

/// One stored count: a key's requests with one outcome in one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// Unix seconds of the UTC hour start.
    pub hour_start: i64,
    /// `ALLOWED` or a denial code.
    pub code: String,
    pub count: u64,
}

/// Counts `batch` unless its id was counted before, then re-marks the keys it touched; one
/// transaction, so a batch is either counted with its id remembered or not at all.
pub fn record(
    store: &Store,
    batch: &UsageBatch,
    now: DateTime<Utc>,
) -> Result<BatchOutcome, rusqlite::Error> {
    store.write(|tx| {
        if let Some(outcome) = earlier_outcome(tx, &batch.batch_id)? {
            return Ok(outcome);
        }
        let (outcome, touched) = count_reports(tx, batch)?;
        remember_batch(tx, batch, outcome, now)?;
        quota::refresh_marks(tx, &touched, now)?;
        Ok(outcome)
    })
}

fn earlier_outcome(tx: &Transaction, batch_id: &str) -> rusqlite::Result<Option<BatchOutcome>> {
    tx.prepare_cached("SELECT accepted, unknown_keys FROM usage_batches WHERE batch_id = ?1")?
        .query_row([batch_id], |row| {
            Ok(BatchOutcome {
                accepted: row.get(0)?,
                unknown_keys: row.get(1)?,
                duplicate: true,
            })
        })
        .optional()
}

/// Adds every report of a known key to its hour; returns the outcome and the keys touched.
fn count_reports(
    tx: &Transaction,
    batch: &UsageBatch,
) -> rusqlite::Result<(BatchOutcome, Vec<StoredKey>)> {
    let mut live_keys: HashMap<&str, Option<StoredKey>> = HashMap::new();
    let mut outcome = BatchOutcome {
        accepted: 0,
        unknown_keys: 0,
        duplicate: false,
    };
    let mut add = tx.prepare_cached(
        "INSERT INTO usage_hourly (key_id, hour_start, code, count)
         VALUES (:key_id, :hour_start, :code, :count)
         ON CONFLICT (key_id, hour_start, code) DO UPDATE SET count = count + excluded.count",
    )?;
    for report in &batch.reports {
        let key = match live_keys.entry(&report.key_id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(unseen) => {
                unseen.insert(keys::find(tx, &report.key_id)?.filter(|key| !key.deleted))
            }
        };
        if key.is_none() {
            outcome.unknown_keys += 1;
            continue;
        }
        outcome.accepted += 1;
        for (code, count) in &report.counts {
            add.execute(named_params! {
                ":key_id": report.key_id,
                ":hour_start": report.hour_start,
                ":code": code,
                ":count": i64::try_from(*count).unwrap_or(i64::MAX),
            })?;
        }
    }
    Ok((outcome, live_keys.into_values().flatten().collect()))
}

/// Remembers the batch id and forgets ids older than the retention (index range delete).
fn remember_batch(
    tx: &Transaction,
    batch: &UsageBatch,
    outcome: BatchOutcome,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO usage_batches (batch_id, proxy_id, received_at, accepted, unknown_keys)
         VALUES (:batch_id, :proxy_id, :received_at, :accepted, :unknown_keys)",
    )?
    .execute(named_params! {
        ":batch_id": batch.batch_id,
        ":proxy_id": batch.proxy_id,
        ":received_at": now.timestamp(),
        ":accepted": outcome.accepted,
        ":unknown_keys": outcome.unknown_keys,
    })?;
    tx.prepare_cached("DELETE FROM usage_batches WHERE received_at < ?1")?
        .execute([(now - BATCH_ID_RETENTION).timestamp()])?;
    Ok(())
}

/// The key's counts for hours starting in `[from, to)` (Unix seconds), oldest first.
pub fn hours(
    tx: &Transaction,
    key_id: &str,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<HourCount>> {
    tx.prepare_cached(
        "SELECT hour_start, code, count FROM usage_hourly
         WHERE key_id = :key_id AND hour_start >= :from AND hour_start < :to
         ORDER BY hour_start, code",
    )?
    .query_map(
        named_params! { ":key_id": key_id, ":from": from, ":to": to },
        |row| {
            let count: i64 = row.get(2)?;
            Ok(HourCount {
                hour_start: row.get(0)?,
                code: row.get(1)?,
                count: u64::try_from(count).unwrap_or(0),
            })
        },
    )?
    .collect()
}

/// Allowed requests of the key in hours starting in `[from, to)`.
pub fn allowed_between(
    tx: &Transaction,
    key_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> rusqlite::Result<u64> {
    let total: i64 = tx
        .prepare_cached(
            "SELECT COALESCE(SUM(count), 0) FROM usage_hourly
             WHERE key_id = :key_id AND hour_start >= :from AND hour_start < :to
               AND code = :code",
        )?
        .query_row(
            named_params! {
                ":key_id": key_id,
                ":from": from.timestamp(),
                ":to": to.timestamp(),
                ":code": ALLOWED_CODE,
            },
            |row| row.get(0),
        )?;
    Ok(u64::try_from(total).unwrap_or(0))
}
