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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use crate::plans::{Environment, LimitOverrides, Plan};
    use crate::store::db::current_version;
    use crate::store::lifecycle;
    use crate::usage_report::HourlyUsage;
    use crate::validate::KeySettings;

    fn temp_store(name: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("keygate-usage-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open(&dir.join("u.db")).unwrap(), dir)
    }

    fn key_with_daily_quota(store: &Store, per_day: u64, now: DateTime<Utc>) -> StoredKey {
        let settings = KeySettings {
            name: "quota".into(),
            environment: Environment::Test,
            team: String::new(),
            scopes: Vec::new(),
            allowed_ips: Vec::new(),
            expires_at: None,
            plan: Plan::Free,
            limits: LimitOverrides {
                per_day: Some(per_day),
                ..LimitOverrides::default()
            },
        };
        lifecycle::create(
            store,
            &crate::store::audit::Actor::bootstrap(),
            &settings,
            now,
        )
        .unwrap()
        .key
    }

    fn batch(batch_id: &str, key_id: &str, hour_start: i64, allowed: u64) -> UsageBatch {
        UsageBatch {
            proxy_id: "p1".into(),
            batch_id: batch_id.into(),
            reports: vec![
                HourlyUsage {
                    key_id: key_id.into(),
                    hour_start,
                    counts: vec![(ALLOWED_CODE.into(), allowed)],
                },
                HourlyUsage {
                    key_id: "key_unknown".into(),
                    hour_start,
                    counts: vec![(ALLOWED_CODE.into(), 1)],
                },
            ],
        }
    }

    #[test]
    fn counts_once_marks_once_and_prunes_old_batch_ids() {
        let (store, dir) = temp_store("record");
        let now = clock::parse("2026-11-23T21:15:00Z").unwrap();
        let hour = now.timestamp() - 15 * 60;
        let key = key_with_daily_quota(&store, 5, now);
        let first = record(&store, &batch("b1", &key.id, hour, 3), now).unwrap();
        assert_eq!(
            first,
            BatchOutcome {
                accepted: 1,
                unknown_keys: 1,
                duplicate: false
            }
        );
        assert_eq!(store.read(current_version).unwrap(), 1, "below quota");
        let again = record(&store, &batch("b1", &key.id, hour, 3), now).unwrap();
        assert!(again.duplicate && again.accepted == 1 && again.unknown_keys == 1);
        let day = (
            crate::quota::day_start(now),
            crate::quota::next_day_start(now),
        );
        let today = |store: &Store| {
            store
                .read(|tx| allowed_between(tx, &key.id, day.0, day.1))
                .unwrap()
        };
        assert_eq!(today(&store), 3);
        record(&store, &batch("b2", &key.id, hour, 2), now).unwrap();
        assert_eq!(today(&store), 5);
        let marked = store.read(|tx| keys::find(tx, &key.id)).unwrap().unwrap();
        assert_eq!(
            marked.quota_exceeded_until.as_deref(),
            Some("2026-11-24T00:00:00Z")
        );
        assert_eq!(marked.updated_version, 2);
        record(&store, &batch("b3", &key.id, hour, 1), now).unwrap();
        assert_eq!(store.read(current_version).unwrap(), 2, "mark unchanged");
        let week_later = now + Duration::days(8);
        record(&store, &batch("b4", &key.id, hour, 1), week_later).unwrap();
        let remembered: Vec<String> = store
            .read(|tx| {
                tx.prepare("SELECT batch_id FROM usage_batches ORDER BY batch_id")?
                    .query_map([], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap();
        assert_eq!(remembered, ["b4"]);
        assert_eq!(
            store.read(current_version).unwrap(),
            2,
            "a lapsed mark is left as it is"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
