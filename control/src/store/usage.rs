//! Usage rows: a batch's counts and its remembered id, a key's or team's hours read back, and
//! the roll-up of old hours into days.

use crate::domain::alerts::KeyRef;
use crate::domain::keys::StoredKey;
use crate::domain::plans::effective_limits;
use crate::domain::plausibility;
use crate::domain::usage_range::HourCount;
use crate::domain::usage_report::{BatchOutcome, KeyEvent, UsageBatch, ALLOWED_CODE};
use crate::store::events as store_events;
use crate::store::ip_sketch;
use crate::store::keys;
use crate::store::plans;
use crate::store::proxies;
use crate::store::sql::{
    named_params, slots, value_rows, Params, Result, Row, ToValue, Tx, LIST_CHUNK,
};
use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, HashMap};

/// How long a batch id is remembered; a proxy retries within seconds, not days.
const BATCH_ID_RETENTION: Duration = Duration::days(7);

/// What counting `batch_id` did the first time, if it was counted before.
pub fn earlier_outcome(tx: &Tx, batch_id: &str) -> Result<Option<BatchOutcome>> {
    tx.query_opt(
        "SELECT accepted, unknown_keys FROM usage_batches WHERE batch_id = ?1",
        [batch_id],
        |row| {
            Ok(BatchOutcome {
                accepted: row.get(0)?,
                unknown_keys: row.get(1)?,
                duplicate: true,
                refused: Vec::new(),
                reporter_revoked: false,
            })
        },
    )
}

/// Rows per multi-row upsert: few round trips for a large batch, well inside both backends'
/// parameter limits (4 parameters a row).
const UPSERT_CHUNK: usize = 250;

/// Adds every report of a known key to its hour; returns each batch's outcome and the keys
/// touched. Reports are summed per (key, hour, code) over all `batches` first and written in
/// multi-row upserts, so a group of batches costs a handful of statements however many
/// reports repeat the same hour (and a hot key's row is written once per group, not once per
/// proxy's batch).
/// An entry claiming more allowed requests than its key's bound (`domain::plausibility`) is not
/// counted at all and is named in its batch's outcome.
pub fn count_reports(
    tx: &Tx,
    batches: &[&UsageBatch],
    max_proxy_rate: u64,
) -> Result<(Vec<BatchOutcome>, Vec<StoredKey>)> {
    let mut asked: Vec<&str> = batches
        .iter()
        .flat_map(|batch| &batch.reports)
        .map(|report| report.key_id.as_str())
        .collect();
    asked.sort_unstable();
    asked.dedup();
    let live_keys: HashMap<String, StoredKey> = keys::find_live(tx, &asked)?
        .into_iter()
        .map(|key| (key.id.clone(), key))
        .collect();
    let plans_changed = plans::changed_at(tx)?;
    // A proxy revoked while its batch waited (here or on another replica) has it counted not
    // at all: what it reported that was not counted yet goes with it.
    let mut reporters: Vec<&str> = batches
        .iter()
        .filter_map(|batch| batch.reporter.as_deref())
        .collect();
    reporters.sort_unstable();
    reporters.dedup();
    let revoked = proxies::revoked_among(tx, &reporters)?;
    let mut newest_used: HashMap<i64, i64> = HashMap::new();
    let mut events: Vec<(&str, &KeyEvent)> = Vec::new();
    let mut registers: BTreeMap<(&str, i64, u8), u8> = BTreeMap::new();
    let mut sums: BTreeMap<(&str, i64, &str), i64> = BTreeMap::new();
    // What identified proxies reported, kept apart so it can be listed and discarded.
    let mut reported: BTreeMap<(&str, &str, i64, &str), i64> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut outcome = BatchOutcome::default();
        if batch
            .reporter
            .as_deref()
            .is_some_and(|reporter| revoked.contains(reporter))
        {
            outcome.reporter_revoked = true;
            outcomes.push(outcome);
            continue;
        }
        for report in &batch.reports {
            let Some(key) = live_keys.get(&report.key_id) else {
                outcome.unknown_keys += 1;
                continue;
            };
            let claimed = report
                .counts
                .iter()
                .filter(|(code, _)| code == ALLOWED_CODE)
                .map(|(_, count)| *count)
                .sum::<u64>();
            let changed_at = plausibility::limits_changed_at(key, &plans_changed)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let limits = effective_limits(&key.plan_limits, &key.limits);
            if let Some(refused) = plausibility::check(
                KeyRef::from(key),
                report.hour_start,
                claimed,
                &limits,
                changed_at,
                max_proxy_rate,
            ) {
                outcome.refused.push(refused);
                continue;
            }
            outcome.accepted += 1;
            events.extend(
                report
                    .events
                    .iter()
                    .map(|event| (report.key_id.as_str(), event)),
            );
            for &(register, value) in &report.ip_registers {
                let held = registers
                    .entry((&report.key_id, report.hour_start, register))
                    .or_insert(0);
                *held = (*held).max(value);
            }
            let allowed = report
                .counts
                .iter()
                .any(|(code, count)| code == ALLOWED_CODE && *count > 0);
            if allowed {
                let newest = newest_used.entry(key.seq).or_insert(report.hour_start);
                *newest = (*newest).max(report.hour_start);
            }
            for (code, count) in &report.counts {
                let count = i64::try_from(*count).unwrap_or(i64::MAX);
                let sum = sums
                    .entry((&report.key_id, report.hour_start, code))
                    .or_insert(0);
                *sum = sum.saturating_add(count);
                if let Some(reporter) = &batch.reporter {
                    let by_proxy = reported
                        .entry((reporter, &report.key_id, report.hour_start, code))
                        .or_insert(0);
                    *by_proxy = by_proxy.saturating_add(count);
                }
            }
        }
        outcomes.push(outcome);
    }
    let rows: Vec<_> = sums.into_iter().collect();
    for chunk in rows.chunks(UPSERT_CHUNK) {
        add_hours(tx, chunk)?;
    }
    let reported: Vec<_> = reported.into_iter().collect();
    for chunk in reported.chunks(UPSERT_CHUNK) {
        proxies::add_reported(tx, chunk)?;
    }
    store_events::insert(tx, &events)?;
    ip_sketch::merge(tx, &registers)?;
    // One statement per hour the keys were last used in (one or two per batch), not per key.
    let mut used_in_hour: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (seq, hour_start) in newest_used {
        used_in_hour.entry(hour_start).or_default().push(seq);
    }
    for (hour_start, seqs) in used_in_hour {
        if let Some(hour) = DateTime::from_timestamp(hour_start, 0) {
            keys::note_used(tx, &seqs, hour)?;
        }
    }
    Ok((outcomes, live_keys.into_values().collect()))
}

/// Adds `rows` ((key id, hour start, code), count) to the hourly counts in one statement.
fn add_hours(tx: &Tx, rows: &[((&str, i64, &str), i64)]) -> Result<()> {
    let mut values = Vec::with_capacity(rows.len() * 4);
    for ((key_id, hour_start, code), count) in rows {
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
            value_rows(4, rows.len())
        ),
        Params::Positional(values),
    )?;
    Ok(())
}

/// Remembers the batch id with what counting it did, so a retry is answered the same.
pub fn remember_batch(
    tx: &Tx,
    batch: &UsageBatch,
    outcome: &BatchOutcome,
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
    Ok(())
}

/// Forgets batch ids older than the retention (index range delete): once per group of batches.
pub fn forget_old_batches(tx: &Tx, now: DateTime<Utc>) -> Result<()> {
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
         WHERE key_id = :key_id AND day_start > CAST(:from AS BIGINT) - 86400 AND day_start < :to
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
               AND d.day_start > CAST(:from AS BIGINT) - 86400 AND d.day_start < :to) AS counted
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

/// The allowed requests of each of `key_ids` in each of the two `ranges` (hours and rolled-up
/// days starting in `[from, to)`), keys with none left out. One statement per 500 keys, so a
/// usage report's quota check costs the same few statements for one key or for hundreds
/// (it was two statements per key).
pub fn allowed_sums(
    tx: &Tx,
    key_ids: &[&str],
    ranges: [(DateTime<Utc>, DateTime<Utc>); 2],
) -> Result<HashMap<String, [u64; 2]>> {
    let [(first_from, first_to), (second_from, second_to)] =
        ranges.map(|(from, to)| (from.timestamp(), to.timestamp()));
    let low = first_from.min(second_from);
    let high = first_to.max(second_to);
    let mut sums = HashMap::with_capacity(key_ids.len());
    for chunk in key_ids.chunks(LIST_CHUNK) {
        let listed = slots(8, chunk.len());
        let mut values = vec![
            first_from.to_value(),
            first_to.to_value(),
            second_from.to_value(),
            second_to.to_value(),
            ALLOWED_CODE.to_value(),
            low.to_value(),
            high.to_value(),
        ];
        values.extend(chunk.iter().map(ToValue::to_value));
        let rows = tx.query_map(
            &format!(
                "SELECT key_id,
                    CAST(COALESCE(SUM(CASE WHEN at >= ?1 AND at < ?2 THEN count ELSE 0 END), 0)
                         AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN at >= ?3 AND at < ?4 THEN count ELSE 0 END), 0)
                         AS BIGINT)
                 FROM (SELECT key_id, hour_start AS at, count FROM usage_hourly
                        WHERE code = ?5 AND hour_start >= ?6 AND hour_start < ?7
                          AND key_id IN ({listed})
                       UNION ALL
                       SELECT key_id, day_start AS at, count FROM usage_daily
                        WHERE code = ?5 AND day_start >= ?6 AND day_start < ?7
                          AND key_id IN ({listed})) AS counted
                 GROUP BY key_id"
            ),
            Params::Positional(values),
            |row| {
                let key_id: String = row.get(0)?;
                let first: i64 = row.get(1)?;
                let second: i64 = row.get(2)?;
                Ok((
                    key_id,
                    [first, second].map(|sum| u64::try_from(sum).unwrap_or(0)),
                ))
            },
        )?;
        sums.extend(rows);
    }
    Ok(sums)
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
    /// Events forgotten (by age or by number per key).
    pub events: usize,
}

/// Rolls the hourly rows of hours starting before `cutoff` into daily totals and deletes them,
/// and forgets batch ids received more than the batch id retention before `now`. Run in one
/// transaction, so every count is in exactly one of the two tables. Changes no version.
pub fn prune(tx: &Tx, cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Result<Pruned> {
    {
        let before = cutoff.timestamp();
        tx.execute("INSERT INTO usage_daily (key_id, day_start, code, count)
             SELECT key_id, hour_start - ((hour_start % 86400) + 86400) % 86400, code,
                    CAST(SUM(count) AS BIGINT)
             FROM usage_hourly WHERE hour_start < ?1
             GROUP BY 1, 2, 3
             ON CONFLICT (key_id, day_start, code) DO UPDATE SET count = usage_daily.count + excluded.count", [before])?;
        let hours = tx.execute("DELETE FROM usage_hourly WHERE hour_start < ?1", [before])?;
        ip_sketch::roll_up(tx, cutoff)?;
        // A proxy's reports can be discarded only while their hours are held hourly.
        proxies::prune_reported(tx, before)?;
        let batches = tx.execute(
            "DELETE FROM usage_batches WHERE received_at < ?1",
            [(now - BATCH_ID_RETENTION).timestamp()],
        )?;
        Ok(Pruned {
            hours,
            batches,
            events: 0,
        })
    }
}
