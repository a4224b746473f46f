//! The fleet's counts in the database, for several control-service replicas (PostgreSQL), so
//! Envoys syncing with different replicas see each other. Written outside the change feed
//! (`Store::write_outside_feed`): count writes never wait for key writes, nor they for them.
//!
//! Statements are portable (SQLite runs them in the unit tests); rows are written in sorted
//! order, so two syncs that touch the same rows lock them in the same order and cannot
//! deadlock each other.

use crate::fleet::frame::Frame;
use crate::fleet::reply::{self, Rest};
use crate::fleet::MAX_COUNT;
use crate::store::sql::{Params, Result, ToValue, Tx};
use crate::store::Store;
use keygate::contract::fleet::{FleetSyncPost, FleetSyncReply, KeyCounts, WINDOWS};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// Rows per multi-row upsert (6 parameters a row): a 1,000-key sync is a handful of statements,
/// well inside both backends' parameter limits.
const UPSERT_ROWS: usize = 1_000;
/// Keys per read (`IN (…)` list).
const READ_CHUNK: usize = 1_000;
/// How often one replica forgets old counts (a range delete per window).
const PRUNE_INTERVAL_MS: u64 = 5_000;
/// How often it also forgets rows of bucket widths no sync uses any more, and limits of keys
/// no Envoy sent for a day.
const SWEEP_INTERVAL_MS: u64 = 60 * 60 * 1_000;
/// A key's limits row is rewritten when its limits change, or at most this often to note it is
/// still in use.
const SEEN_REFRESH_MS: u64 = 60_000;
/// A key stays a candidate for the hot keys while counts that made it hot can still be inside
/// their window; each sync re-checks it before answering it.
const LIMITS_RETENTION_MS: u64 = 2 * 86_400_000;
/// A window spans at most this many buckets (contract), plus one of slack.
const MAX_SPAN: u64 = keygate::contract::fleet::MAX_BUCKETS_PER_WINDOW as u64 + 1;

#[derive(Debug, Default)]
pub struct Database {
    last_prune_ms: AtomicU64,
    last_sweep_ms: AtomicU64,
}

/// A key's limits row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    limits: [Option<u64>; WINDOWS],
    hot_until_ms: u64,
    seen_ms: u64,
}

impl Database {
    /// Counts a validated `post` received at `now_ms` and answers it.
    pub fn sync(&self, store: &Store, post: &FleetSyncPost, now_ms: u64) -> Result<FleetSyncReply> {
        let frame = Frame::of(post, now_ms);
        let reply = store.write_outside_feed(|tx| answer(tx, post, &frame, now_ms))?;
        if due(&self.last_prune_ms, now_ms, PRUNE_INTERVAL_MS) {
            let sweep = due(&self.last_sweep_ms, now_ms, SWEEP_INTERVAL_MS);
            // Pruning is housekeeping: a failure (say, a deadlock with a late write of an old
            // bucket) is logged and retried later; the sync itself has been answered.
            if let Err(error) = store.write_outside_feed(|tx| prune(tx, &frame, now_ms, sweep)) {
                eprintln!("fleet counts: pruning failed: {error}");
            }
        }
        Ok(reply)
    }
}

/// Whether `interval_ms` has passed since `last`; claims the run if so.
fn due(last: &AtomicU64, now_ms: u64, interval_ms: u64) -> bool {
    let previous = last.load(Ordering::Relaxed);
    now_ms.saturating_sub(previous) >= interval_ms
        && last
            .compare_exchange(previous, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

fn answer(tx: &Tx, post: &FleetSyncPost, frame: &Frame, now_ms: u64) -> Result<FleetSyncReply> {
    write_counts(tx, post, frame)?;
    let tags: Vec<&str> = unique_tags(post);
    let counted = read_counts(tx, &tags, &post.proxy_id, frame)?;
    let stored = read_limits(tx, &tags)?;
    let mut posted = Vec::with_capacity(post.keys.len());
    let mut changed = BTreeMap::new();
    for key in &post.keys {
        let counts = counted.get(key.key.as_str());
        let totals = counts.map_or([0; WINDOWS], |counts| counts.totals);
        let limits = updated_limits(stored.get(key.key.as_str()), key, &totals, frame, now_ms);
        if let Some(limits) = limits {
            changed.insert(key.key.as_str(), limits);
        }
        posted.push(rest_of(&key.key, key.limits, counts));
    }
    write_limits(tx, &changed)?;
    let in_post: HashSet<&str> = tags.iter().copied().collect();
    let candidates: Vec<(String, [Option<u64>; WINDOWS])> = tx
        .query_map(
            "SELECT key_tag, per_minute, per_hour, per_day FROM fleet_limits
             WHERE hot_until_ms > ?1 ORDER BY key_tag",
            [as_i64(now_ms)],
            |row| {
                let limit = |index| -> Result<Option<u64>> {
                    Ok(row
                        .get::<Option<i64>>(index)?
                        .and_then(|v| u64::try_from(v).ok()))
                };
                Ok((row.get::<String>(0)?, [limit(1)?, limit(2)?, limit(3)?]))
            },
        )?
        .into_iter()
        .filter(|(tag, _)| !in_post.contains(tag.as_str()))
        .collect();
    let candidate_tags: Vec<&str> = candidates.iter().map(|(tag, _)| tag.as_str()).collect();
    let counted = read_counts(tx, &candidate_tags, &post.proxy_id, frame)?;
    let hot = candidates
        .iter()
        .filter_map(|(tag, limits)| {
            let counts = counted.get(tag.as_str())?;
            reply::is_hot(limits, &counts.totals).then(|| rest_of(tag, *limits, Some(counts)))
        })
        .collect();
    Ok(reply::assemble(posted, hot))
}

fn unique_tags(post: &FleetSyncPost) -> Vec<&str> {
    let mut tags: Vec<&str> = post.keys.iter().map(|key| key.key.as_str()).collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// Raises every posted count to the posted value (never lowers one), in key order.
fn write_counts(tx: &Tx, post: &FleetSyncPost, frame: &Frame) -> Result<()> {
    let mut rows: BTreeMap<(&str, usize, u64), u64> = BTreeMap::new();
    for key in &post.keys {
        for window in 0..WINDOWS {
            for &(bucket, count) in &key.counts[window] {
                if count > 0 && frame.kept(window, bucket) {
                    let held = rows.entry((key.key.as_str(), window, bucket)).or_insert(0);
                    *held = (*held).max(count.min(MAX_COUNT));
                }
            }
        }
    }
    let rows: Vec<_> = rows.into_iter().collect();
    for chunk in rows.chunks(UPSERT_ROWS) {
        let mut values = Vec::with_capacity(chunk.len() * 6);
        let mut tuples = Vec::with_capacity(chunk.len());
        for ((tag, window, bucket), count) in chunk {
            let first = values.len() + 1;
            tuples.push(format!(
                "(?{first}, ?{}, ?{}, ?{}, ?{}, ?{})",
                first + 1,
                first + 2,
                first + 3,
                first + 4,
                first + 5
            ));
            values.extend([
                tag.to_value(),
                as_i64(*window as u64).to_value(),
                as_i64(frame.bucket_ms[*window]).to_value(),
                as_i64(*bucket).to_value(),
                post.proxy_id.to_value(),
                as_i64(*count).to_value(),
            ]);
        }
        tx.execute(
            &format!(
                "INSERT INTO fleet_counts (key_tag, win, bucket_ms, bucket, proxy, count)
                 VALUES {}
                 ON CONFLICT (key_tag, win, bucket_ms, bucket, proxy)
                 DO UPDATE SET count = excluded.count WHERE excluded.count > fleet_counts.count",
                tuples.join(", ")
            ),
            Params::Positional(values),
        )?;
    }
    Ok(())
}

/// One key's counts inside the frame: per window, per bucket, the fleet's and the caller's.
#[derive(Debug, Default)]
struct Counted {
    buckets: [BTreeMap<u64, (u64, u64)>; WINDOWS],
    totals: [u64; WINDOWS],
}

/// The counts of `tags` inside the frame's windows, with `proxy`'s own share of each bucket.
fn read_counts<'t>(
    tx: &Tx,
    tags: &[&'t str],
    proxy: &str,
    frame: &Frame,
) -> Result<HashMap<&'t str, Counted>> {
    let mut counted: HashMap<&str, Counted> = HashMap::with_capacity(tags.len());
    for chunk in tags.chunks(READ_CHUNK) {
        let mut values = vec![proxy.to_value()];
        for window in 0..WINDOWS {
            values.push(as_i64(frame.bucket_ms[window]).to_value());
            values.push(as_i64(frame.oldest_inside(window)).to_value());
        }
        let list: Vec<String> = (0..chunk.len())
            .map(|index| format!("?{}", values.len() + index + 1))
            .collect();
        values.extend(chunk.iter().map(ToValue::to_value));
        let rows = tx.query(
            &format!(
                "SELECT key_tag, win, bucket, CAST(SUM(count) AS BIGINT),
                        CAST(SUM(CASE WHEN proxy = ?1 THEN count ELSE 0 END) AS BIGINT)
                 FROM fleet_counts
                 WHERE key_tag IN ({})
                   AND ((win = 0 AND bucket_ms = ?2 AND bucket >= ?3)
                     OR (win = 1 AND bucket_ms = ?4 AND bucket >= ?5)
                     OR (win = 2 AND bucket_ms = ?6 AND bucket >= ?7))
                 GROUP BY key_tag, win, bucket",
                list.join(", ")
            ),
            Params::Positional(values),
        )?;
        for row in rows {
            let tag: String = row.get(0)?;
            let Some(&tag) = chunk.iter().find(|known| **known == tag) else {
                continue;
            };
            let window = usize::try_from(row.get::<i64>(1)?).unwrap_or(WINDOWS);
            let bucket = as_u64(row.get(2)?);
            if window >= WINDOWS || !frame.inside(window, bucket) {
                continue;
            }
            let (total, own) = (as_u64(row.get(3)?), as_u64(row.get(4)?));
            let entry = counted.entry(tag).or_default();
            entry.buckets[window].insert(bucket, (total, own));
            entry.totals[window] = entry.totals[window].saturating_add(total);
        }
    }
    Ok(counted)
}

fn rest_of(tag: &str, limits: [Option<u64>; WINDOWS], counted: Option<&Counted>) -> Rest {
    let mut counts: [Vec<(u64, u64)>; WINDOWS] = Default::default();
    let mut totals = [0; WINDOWS];
    if let Some(counted) = counted {
        totals = counted.totals;
        for (window, rest) in counts.iter_mut().enumerate() {
            *rest = counted.buckets[window]
                .iter()
                .map(|(&bucket, &(total, own))| (bucket, total.saturating_sub(own)))
                .filter(|(_, count)| *count > 0)
                .collect();
        }
    }
    Rest {
        heat: reply::heat(&limits, &totals),
        key: KeyCounts {
            key: tag.to_string(),
            limits,
            counts,
        },
    }
}

fn read_limits(tx: &Tx, tags: &[&str]) -> Result<HashMap<String, Limits>> {
    let mut stored = HashMap::with_capacity(tags.len());
    for chunk in tags.chunks(READ_CHUNK) {
        let list: Vec<String> = (1..=chunk.len()).map(|index| format!("?{index}")).collect();
        let rows = tx.query(
            &format!(
                "SELECT key_tag, per_minute, per_hour, per_day, hot_until_ms, seen_ms
                 FROM fleet_limits WHERE key_tag IN ({})",
                list.join(", ")
            ),
            Params::Positional(chunk.iter().map(ToValue::to_value).collect()),
        )?;
        for row in rows {
            let limit =
                |index| -> Result<Option<u64>> { Ok(row.get::<Option<i64>>(index)?.map(as_u64)) };
            stored.insert(
                row.get::<String>(0)?,
                Limits {
                    limits: [limit(1)?, limit(2)?, limit(3)?],
                    hot_until_ms: as_u64(row.get(4)?),
                    seen_ms: as_u64(row.get(5)?),
                },
            );
        }
    }
    Ok(stored)
}

/// The key's limits row as it should be now, if that differs enough from the stored one to be
/// worth a write: other limits, newly hot (or hot for longer), or not noted for a while.
fn updated_limits(
    stored: Option<&Limits>,
    key: &KeyCounts,
    totals: &[u64; WINDOWS],
    frame: &Frame,
    now_ms: u64,
) -> Option<Limits> {
    // Hot until the counts that make it hot may have left the longest window it is hot in.
    let hot_for_ms = (0..WINDOWS)
        .filter(|&window| match key.limits[window] {
            Some(limit) if limit > 0 => totals[window].saturating_mul(2) >= limit,
            _ => false,
        })
        .map(|window| frame.span[window].saturating_mul(frame.bucket_ms[window]))
        .max();
    let hot_until_ms = hot_for_ms.map_or(0, |ms| now_ms.saturating_add(ms));
    let wanted = Limits {
        limits: key.limits,
        hot_until_ms: stored.map_or(0, |row| row.hot_until_ms).max(hot_until_ms),
        seen_ms: now_ms,
    };
    match stored {
        Some(row)
            if row.limits == wanted.limits
                && row.hot_until_ms.saturating_add(SEEN_REFRESH_MS) >= hot_until_ms
                && row.seen_ms.saturating_add(SEEN_REFRESH_MS) > now_ms =>
        {
            None
        }
        _ => Some(wanted),
    }
}

fn write_limits(tx: &Tx, changed: &BTreeMap<&str, Limits>) -> Result<()> {
    let rows: Vec<_> = changed.iter().collect();
    for chunk in rows.chunks(UPSERT_ROWS) {
        let mut values = Vec::with_capacity(chunk.len() * 6);
        let mut tuples = Vec::with_capacity(chunk.len());
        for (tag, row) in chunk {
            let first = values.len() + 1;
            tuples.push(format!(
                "(?{first}, ?{}, ?{}, ?{}, ?{}, ?{})",
                first + 1,
                first + 2,
                first + 3,
                first + 4,
                first + 5
            ));
            values.push(tag.to_value());
            values.extend(row.limits.iter().map(|limit| limit.map(as_i64).to_value()));
            values.push(as_i64(row.hot_until_ms).to_value());
            values.push(as_i64(row.seen_ms).to_value());
        }
        tx.execute(
            &format!(
                "INSERT INTO fleet_limits
                     (key_tag, per_minute, per_hour, per_day, hot_until_ms, seen_ms)
                 VALUES {}
                 ON CONFLICT (key_tag) DO UPDATE SET
                     per_minute = excluded.per_minute, per_hour = excluded.per_hour,
                     per_day = excluded.per_day,
                     hot_until_ms = CASE WHEN excluded.hot_until_ms > fleet_limits.hot_until_ms
                                         THEN excluded.hot_until_ms
                                         ELSE fleet_limits.hot_until_ms END,
                     seen_ms = excluded.seen_ms",
                tuples.join(", ")
            ),
            Params::Positional(values),
        )?;
    }
    Ok(())
}

/// Forgets the counts of the frame's bucket widths older than their window plus a bucket; on a
/// sweep also rows of any width older than the longest possible window, and limits of keys no
/// Envoy sent for two days.
fn prune(tx: &Tx, frame: &Frame, now_ms: u64, sweep: bool) -> Result<usize> {
    let mut forgotten = 0;
    for window in 0..WINDOWS {
        forgotten += tx.execute(
            "DELETE FROM fleet_counts WHERE win = ?1 AND bucket_ms = ?2 AND bucket < ?3",
            [
                as_i64(window as u64),
                as_i64(frame.bucket_ms[window]),
                as_i64(frame.forget_below[window]),
            ],
        )?;
    }
    if sweep {
        forgotten += tx.execute(
            "DELETE FROM fleet_counts WHERE bucket < ?2 / bucket_ms - ?1",
            [as_i64(MAX_SPAN), as_i64(now_ms)],
        )?;
        tx.execute(
            "DELETE FROM fleet_limits WHERE seen_ms < ?1 AND hot_until_ms < ?2",
            [
                as_i64(now_ms.saturating_sub(LIMITS_RETENTION_MS)),
                as_i64(now_ms),
            ],
        )?;
    }
    Ok(forgotten)
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn as_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
