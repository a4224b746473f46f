//! Usage rows: counting a proxy's batch once, and reading a key's hours back.

use crate::app::quota;
use crate::domain::clock;
use crate::domain::keys::StoredKey;
use crate::domain::usage_report::{UsageBatch, ALLOWED_CODE};
use crate::store::db::Store;
use crate::store::keys;
use crate::store::sql::{named_params, Error, Params, Result, Row, ToValue, Tx};
use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, HashMap};

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
) -> Result<BatchOutcome, Error> {
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

fn earlier_outcome(tx: &Tx, batch_id: &str) -> Result<Option<BatchOutcome>> {
    tx.query_opt(
        "SELECT accepted, unknown_keys FROM usage_batches WHERE batch_id = ?1",
        [batch_id],
        |row| {
            Ok(BatchOutcome {
                accepted: row.get(0)?,
                unknown_keys: row.get(1)?,
                duplicate: true,
            })
        },
    )
}

/// Rows per multi-row upsert: few round trips for a large batch, well inside both backends'
/// parameter limits (4 parameters a row).
const UPSERT_CHUNK: usize = 250;

/// Adds every report of a known key to its hour; returns the outcome and the keys touched.
/// Reports are summed per (key, hour, code) first and written in multi-row upserts, so a batch
/// costs a handful of statements however many reports repeat the same hour.
fn count_reports(tx: &Tx, batch: &UsageBatch) -> Result<(BatchOutcome, Vec<StoredKey>)> {
    let mut asked: Vec<&str> = batch
        .reports
        .iter()
        .map(|report| report.key_id.as_str())
        .collect();
    asked.sort_unstable();
    asked.dedup();
    let live_keys: HashMap<String, StoredKey> = keys::find_live(tx, &asked)?
        .into_iter()
        .map(|key| (key.id.clone(), key))
        .collect();
    let mut newest_used: HashMap<i64, i64> = HashMap::new();
    let mut sums: BTreeMap<(&str, i64, &str), i64> = BTreeMap::new();
    let mut outcome = BatchOutcome {
        accepted: 0,
        unknown_keys: 0,
        duplicate: false,
    };
    for report in &batch.reports {
        let Some(key) = live_keys.get(&report.key_id) else {
            outcome.unknown_keys += 1;
            continue;
        };
        outcome.accepted += 1;
        let allowed = report
            .counts
            .iter()
            .any(|(code, count)| code == ALLOWED_CODE && *count > 0);
        if allowed {
            let newest = newest_used.entry(key.seq).or_insert(report.hour_start);
            *newest = (*newest).max(report.hour_start);
        }
        for (code, count) in &report.counts {
            let sum = sums
                .entry((&report.key_id, report.hour_start, code))
                .or_insert(0);
            *sum = sum.saturating_add(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }
    let rows: Vec<_> = sums.into_iter().collect();
    for chunk in rows.chunks(UPSERT_CHUNK) {
        add_hours(tx, chunk)?;
    }
    for (seq, hour_start) in newest_used {
        if let Some(hour) = DateTime::from_timestamp(hour_start, 0) {
            keys::note_used(tx, seq, hour)?;
        }
    }
    Ok((outcome, live_keys.into_values().collect()))
}

/// Adds `rows` ((key id, hour start, code), count) to the hourly counts in one statement.
fn add_hours(tx: &Tx, rows: &[((&str, i64, &str), i64)]) -> Result<()> {
    let mut values = Vec::with_capacity(rows.len() * 4);
    let mut tuples = Vec::with_capacity(rows.len());
    for ((key_id, hour_start, code), count) in rows {
        let first = values.len() + 1;
        tuples.push(format!(
            "(?{first}, ?{}, ?{}, ?{})",
            first + 1,
            first + 2,
            first + 3
        ));
        values.extend([
            key_id.to_value(),
            hour_start.to_value(),
            code.to_value(),
            count.to_value(),
        ]);
    }
    tx.execute(
        &format!(
            "INSERT INTO usage_hourly (key_id, hour_start, code, count) VALUES {}
             ON CONFLICT (key_id, hour_start, code)
             DO UPDATE SET count = usage_hourly.count + excluded.count",
            tuples.join(", ")
        ),
        Params::Positional(values),
    )?;
    Ok(())
}

/// Remembers the batch id and forgets ids older than the retention (index range delete).
fn remember_batch(
    tx: &Tx,
    batch: &UsageBatch,
    outcome: BatchOutcome,
    now: DateTime<Utc>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO usage_batches (batch_id, proxy_id, received_at, accepted, unknown_keys)
         VALUES (:batch_id, :proxy_id, :received_at, :accepted, :unknown_keys)",
        named_params! {
            ":batch_id": batch.batch_id,
            ":proxy_id": batch.proxy_id,
            ":received_at": now.timestamp(),
            ":accepted": outcome.accepted,
            ":unknown_keys": outcome.unknown_keys,
        },
    )?;
    tx.execute(
        "DELETE FROM usage_batches WHERE received_at < ?1",
        [(now - BATCH_ID_RETENTION).timestamp()],
    )?;
    Ok(())
}

/// The key's counts for hours starting in `[from, to)` (Unix seconds), oldest first; days
/// rolled up by [`prune`] that overlap the range come as one row at the day's start.
pub fn hours(tx: &Tx, key_id: &str, from: i64, to: i64) -> Result<Vec<HourCount>> {
    tx.query_map(
        "SELECT hour_start, code, count FROM usage_hourly
         WHERE key_id = :key_id AND hour_start >= :from AND hour_start < :to
         UNION ALL
         SELECT day_start, code, count FROM usage_daily
         WHERE key_id = :key_id AND day_start > :from - 86400 AND day_start < :to
         ORDER BY 1, 2",
        named_params! { ":key_id": key_id, ":from": from, ":to": to },
        hour_count,
    )
}

/// The summed counts of every key of `team` (of every key when `None`), deleted keys included,
/// by hour as [`hours`] reads them.
pub fn team_hours(tx: &Tx, team: Option<&str>, from: i64, to: i64) -> Result<Vec<HourCount>> {
    tx.query_map(
        "SELECT start, code, CAST(SUM(count) AS BIGINT) FROM (
             SELECT u.hour_start AS start, u.code AS code, u.count AS count
             FROM keys k JOIN usage_hourly u ON u.key_id = k.id
             WHERE (CAST(:team AS TEXT) IS NULL OR k.team = :team)
               AND u.hour_start >= :from AND u.hour_start < :to
             UNION ALL
             SELECT d.day_start, d.code, d.count
             FROM keys k JOIN usage_daily d ON d.key_id = k.id
             WHERE (CAST(:team AS TEXT) IS NULL OR k.team = :team)
               AND d.day_start > :from - 86400 AND d.day_start < :to) AS counted
         GROUP BY start, code ORDER BY start, code",
        named_params! { ":team": team, ":from": from, ":to": to },
        hour_count,
    )
}

fn hour_count(row: &Row) -> Result<HourCount> {
    let count: i64 = row.get(2)?;
    Ok(HourCount {
        hour_start: row.get(0)?,
        code: row.get(1)?,
        count: u64::try_from(count).unwrap_or(0),
    })
}

/// Allowed requests of the key in hours (and rolled-up days) starting in `[from, to)`.
pub fn allowed_between(
    tx: &Tx,
    key_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<u64> {
    let total: i64 = tx.query_row(
        "SELECT (SELECT COALESCE(CAST(SUM(count) AS BIGINT), 0) FROM usage_hourly
                     WHERE key_id = :key_id AND hour_start >= :from AND hour_start < :to
                       AND code = :code)
                  + (SELECT COALESCE(CAST(SUM(count) AS BIGINT), 0) FROM usage_daily
                     WHERE key_id = :key_id AND day_start >= :from AND day_start < :to
                       AND code = :code)",
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

/// The first instant whose hours are kept hourly: the UTC midnight `retention_days` days before
/// today's.
pub fn retention_cutoff(now: DateTime<Utc>, retention_days: u32) -> DateTime<Utc> {
    crate::domain::quota::day_start(now) - Duration::days(i64::from(retention_days))
}

/// What one [`prune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Hourly rows rolled into daily totals and deleted.
    pub hours: usize,
    /// Batch ids forgotten.
    pub batches: usize,
}

/// Rolls the hourly rows of hours starting before `cutoff` into daily totals and deletes them,
/// and forgets batch ids received more than the batch id retention before `now`; one
/// transaction, so every count is in exactly one of the two tables. Changes no version.
pub fn prune(store: &Store, cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Result<Pruned> {
    store.write(|tx| {
        let cutoff = cutoff.timestamp();
        tx.execute("INSERT INTO usage_daily (key_id, day_start, code, count)
             SELECT key_id, hour_start - ((hour_start % 86400) + 86400) % 86400, code,
                    CAST(SUM(count) AS BIGINT)
             FROM usage_hourly WHERE hour_start < ?1
             GROUP BY 1, 2, 3
             ON CONFLICT (key_id, day_start, code) DO UPDATE SET count = usage_daily.count + excluded.count", [cutoff])?;
        let hours = tx
            .execute("DELETE FROM usage_hourly WHERE hour_start < ?1", [cutoff])?;
        let batches = tx
            .execute("DELETE FROM usage_batches WHERE received_at < ?1", [(now - BATCH_ID_RETENTION).timestamp()])?;
        Ok(Pruned { hours, batches })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app;
    use crate::domain::clock;
    use crate::domain::keys::KeySettings;
    use crate::domain::plans::{Environment, LimitOverrides, Plan};
    use crate::domain::usage_report::HourlyUsage;
    use crate::store::db::current_version;
    use crate::store::db::temp_store;

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
        app::keys::create(
            store,
            &crate::domain::audit::Actor::bootstrap(),
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
        let (store, dir) = temp_store("usage", "record");
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
            crate::domain::quota::day_start(now),
            crate::domain::quota::next_day_start(now),
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
            marked.quota_exceeded_until.map(clock::format).as_deref(),
            Some("2026-11-24T00:00:00Z")
        );
        assert_eq!(marked.updated_version, 2);
        record(&store, &batch("b3", &key.id, hour, 1), now).unwrap();
        assert_eq!(store.read(current_version).unwrap(), 2, "mark unchanged");
        let week_later = now + Duration::days(8);
        record(&store, &batch("b4", &key.id, hour, 1), week_later).unwrap();
        let remembered: Vec<String> = store
            .read(|tx| {
                tx.query_map(
                    "SELECT batch_id FROM usage_batches ORDER BY batch_id",
                    (),
                    |row| row.get(0),
                )
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

#[cfg(test)]
mod retention_tests {
    use super::*;
    use crate::app;
    use crate::domain::keys::KeySettings;
    use crate::domain::plans::{Environment, LimitOverrides, Plan};
    use crate::domain::usage_range::{summarize, Granularity};
    use crate::domain::usage_report::HourlyUsage;
    use crate::store::db::current_version;
    use crate::store::db::temp_store;

    fn key_of(store: &Store, team: &str, now: DateTime<Utc>) -> StoredKey {
        let settings = KeySettings {
            name: "usage".into(),
            environment: Environment::Test,
            team: team.into(),
            scopes: Vec::new(),
            allowed_ips: Vec::new(),
            expires_at: None,
            plan: Plan::Free,
            limits: LimitOverrides::default(),
        };
        app::keys::create(
            store,
            &crate::domain::audit::Actor::bootstrap(),
            &settings,
            now,
        )
        .unwrap()
        .key
    }

    fn report(key_id: &str, hour: &str, counts: &[(&str, u64)]) -> HourlyUsage {
        HourlyUsage {
            key_id: key_id.into(),
            hour_start: clock::parse(hour).unwrap().timestamp(),
            counts: counts
                .iter()
                .map(|(code, count)| ((*code).to_string(), *count))
                .collect(),
        }
    }

    fn post(store: &Store, batch_id: &str, reports: Vec<HourlyUsage>, now: DateTime<Utc>) {
        let batch = UsageBatch {
            proxy_id: "p1".into(),
            batch_id: batch_id.into(),
            reports,
        };
        record(store, &batch, now).unwrap();
    }

    fn last_used(store: &Store, id: &str) -> Option<String> {
        store
            .read(|tx| keys::find(tx, id))
            .unwrap()
            .unwrap()
            .last_used_at
            .map(clock::format)
    }

    #[test]
    fn last_used_is_the_newest_allowed_hour_and_changes_no_version() {
        let (store, dir) = temp_store("usage-r", "last-used");
        let now = clock::parse("2026-11-23T21:15:00Z").unwrap();
        let key = key_of(&store, "t", now);
        let version = store.read(current_version).unwrap();
        post(
            &store,
            "b1",
            vec![report(
                &key.id,
                "2026-11-23T20:00:00Z",
                &[("RATE_LIMIT_EXCEEDED", 4)],
            )],
            now,
        );
        assert_eq!(last_used(&store, &key.id), None, "denials are not use");
        post(
            &store,
            "b2",
            vec![
                report(&key.id, "2026-11-23T19:00:00Z", &[(ALLOWED_CODE, 1)]),
                report(&key.id, "2026-11-23T20:00:00Z", &[(ALLOWED_CODE, 2)]),
            ],
            now,
        );
        assert_eq!(
            last_used(&store, &key.id).as_deref(),
            Some("2026-11-23T20:00:00Z")
        );
        post(
            &store,
            "b3",
            vec![report(
                &key.id,
                "2026-11-23T18:00:00Z",
                &[(ALLOWED_CODE, 1)],
            )],
            now,
        );
        assert_eq!(
            last_used(&store, &key.id).as_deref(),
            Some("2026-11-23T20:00:00Z"),
            "a late report of an older hour does not move it back"
        );
        assert_eq!(store.read(current_version).unwrap(), version);
        let stored = store.read(|tx| keys::find(tx, &key.id)).unwrap().unwrap();
        assert_eq!(stored.updated_version, key.updated_version);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pruning_rolls_old_hours_into_days_with_the_same_sums() {
        let (store, dir) = temp_store("usage-r", "prune");
        let now = clock::parse("2026-11-23T21:15:00Z").unwrap();
        let first = key_of(&store, "t", now);
        let second = key_of(&store, "t", now);
        let other = key_of(&store, "u", now);
        post(
            &store,
            "b1",
            vec![
                report(&first.id, "2026-11-19T01:00:00Z", &[(ALLOWED_CODE, 3)]),
                report(
                    &first.id,
                    "2026-11-19T23:00:00Z",
                    &[(ALLOWED_CODE, 4), ("QUOTA_EXCEEDED", 1)],
                ),
                report(&second.id, "2026-11-19T05:00:00Z", &[(ALLOWED_CODE, 10)]),
                report(&first.id, "2026-11-20T00:00:00Z", &[(ALLOWED_CODE, 5)]),
                report(&first.id, "2026-11-21T12:00:00Z", &[(ALLOWED_CODE, 6)]),
                report(&other.id, "2026-11-19T05:00:00Z", &[(ALLOWED_CODE, 100)]),
                report(&first.id, "2026-11-23T20:00:00Z", &[(ALLOWED_CODE, 7)]),
            ],
            now,
        );
        let from = clock::parse("2026-11-18T00:00:00Z").unwrap().timestamp();
        let to = now.timestamp();
        let read = |store: &Store| {
            store
                .read(|tx| {
                    Ok::<_, Error>((
                        summarize(&hours(tx, &first.id, from, to)?, Granularity::Day),
                        summarize(&team_hours(tx, Some("t"), from, to)?, Granularity::Day),
                        summarize(&team_hours(tx, None, from, to)?, Granularity::Day),
                        allowed_between(
                            tx,
                            &first.id,
                            clock::parse("2026-11-19T00:00:00Z").unwrap(),
                            clock::parse("2026-11-22T00:00:00Z").unwrap(),
                        )?,
                    ))
                })
                .unwrap()
        };
        let before = read(&store);
        assert_eq!(before.0.totals.total, 26);
        assert_eq!(before.1.totals.allowed, 35);
        assert_eq!(before.2.totals.total, 136);
        assert_eq!(before.3, 18);
        let version = store.read(current_version).unwrap();
        let cutoff = retention_cutoff(now, 3);
        assert_eq!(clock::format(cutoff), "2026-11-20T00:00:00Z");
        let pruned = prune(&store, cutoff, now).unwrap();
        assert_eq!(pruned.hours, 5, "every hourly row before the 20th");
        let daily: Vec<(String, i64, String, i64)> = store
            .read(|tx| {
                tx.query_map(
                    "SELECT key_id, day_start, code, count FROM usage_daily ORDER BY 1, 2, 3",
                    (),
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
            })
            .unwrap();
        let day_19 = clock::parse("2026-11-19T00:00:00Z").unwrap().timestamp();
        let mut expected = vec![
            (first.id.clone(), day_19, ALLOWED_CODE.to_string(), 7),
            (first.id.clone(), day_19, "QUOTA_EXCEEDED".to_string(), 1),
            (second.id.clone(), day_19, ALLOWED_CODE.to_string(), 10),
            (other.id.clone(), day_19, ALLOWED_CODE.to_string(), 100),
        ];
        expected.sort();
        assert_eq!(daily, expected);
        let left: i64 = store
            .read(|tx| {
                tx.query_row(
                    "SELECT COUNT(*) FROM usage_hourly WHERE hour_start < ?1",
                    [cutoff.timestamp()],
                    |row| row.get(0),
                )
            })
            .unwrap();
        assert_eq!(left, 0);
        assert_eq!(
            read(&store),
            before,
            "reads across the cutoff are unchanged"
        );
        assert_eq!(store.read(current_version).unwrap(), version);
        post(
            &store,
            "late",
            vec![report(
                &first.id,
                "2026-11-19T02:00:00Z",
                &[(ALLOWED_CODE, 2)],
            )],
            now,
        );
        prune(&store, cutoff, now).unwrap();
        let after_late = read(&store);
        assert_eq!(
            after_late.0.totals.total, 28,
            "a late report is added to its day"
        );
        assert_eq!(after_late.0.buckets[0].counts.allowed, 9);
        assert_eq!(prune(&store, cutoff, now).unwrap().hours, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
