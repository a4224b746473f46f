//! The fleet's counts in the database, for several control-service replicas (PostgreSQL), so
//! Envoys syncing with different replicas see each other. Written outside the change feed
//! (`Store::write_outside_feed`): count writes never wait for key writes, nor they for them.
//!
//! Statements are portable (SQLite runs them in the unit tests); rows are written in sorted
//! order, so two syncs that touch the same rows lock them in the same order and cannot
//! deadlock each other.
//!
//! What keeps a sync cheap: only counts that grew are written (`written.rs`: an Envoy resends
//! every bucket of a key each time), and the counts of a key only the posting Envoy ever sent
//! (`fleet_limits.sole_proxy`) are not read back at all: the rest of the fleet has none.

mod limits_rows;

use crate::fleet::bounds::{self, Bounding, FleetBounds};
use crate::fleet::frame::Frame;
use crate::fleet::json_params::{json_array, json_rows, json_texts};
use crate::fleet::reply::{self, Rest};
use crate::fleet::written::{self, Written};
use crate::fleet::MAX_COUNT;
use crate::store::sql::{params, Dialect, Params, Result, ToValue, Tx};
use crate::store::Store;
use keygate_contract::fleet::{FleetSyncPost, FleetSyncReply, KeyCounts, RefusedCount, WINDOWS};
use limits_rows::{read_limits, updated_limits, write_limits};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// Rows per upsert (one JSON parameter): a 1,000-key sync is one or two statements.
const UPSERT_ROWS: usize = 20_000;
/// Keys per read.
pub(super) const READ_CHUNK: usize = 5_000;
/// How often one replica forgets old counts (a range delete per window).
const PRUNE_INTERVAL_MS: u64 = 5_000;
/// How often it also forgets rows of bucket widths no sync uses any more, and limits of keys
/// no Envoy sent for a day.
const SWEEP_INTERVAL_MS: u64 = 60 * 60 * 1_000;
/// A key stays a candidate for the hot keys while counts that made it hot can still be inside
/// their window; each sync re-checks it before answering it.
const LIMITS_RETENTION_MS: u64 = 2 * 86_400_000;
/// A window spans at most this many buckets (contract), plus one of slack.
const MAX_SPAN: u64 = keygate_contract::fleet::MAX_BUCKETS_PER_WINDOW as u64 + 1;

#[derive(Debug, Default)]
pub struct Database {
    written: Written,
    last_prune_ms: AtomicU64,
    last_sweep_ms: AtomicU64,
}

/// Key `tag`'s buckets with the fleet's count in each (the headroom read).
pub fn buckets_of(store: &Store, tag: &str) -> Result<Vec<(usize, u64, u64, u64)>> {
    store.read(|tx| {
        tx.query_map(
            "SELECT win, bucket_ms, bucket, CAST(SUM(count) AS BIGINT) FROM fleet_counts
             WHERE key_tag = ?1 GROUP BY win, bucket_ms, bucket",
            [tag],
            |row| {
                let [window, width, bucket, count]: [i64; 4] =
                    [row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?];
                let unsigned = |value: i64| u64::try_from(value).unwrap_or(0);
                Ok((
                    unsigned(window) as usize,
                    unsigned(width),
                    unsigned(bucket),
                    unsigned(count),
                ))
            },
        )
    })
}

impl Database {
    /// Counts a validated `post` received at `now_ms` and answers it.
    /// Keys whose counts are above what one Envoy can admit (`bounds`) are left out of it
    /// and named in the answer's `refused`.
    pub fn sync(
        &self,
        store: &Store,
        post: &FleetSyncPost,
        now_ms: u64,
        bounds: &FleetBounds,
    ) -> Result<FleetSyncReply> {
        // The index is held for the check only, not through the database transaction.
        let refused = bounds.bounding(|bounding| self.over_bound(post, now_ms, bounding));
        let plausible;
        let post = if refused.is_empty() {
            post
        } else {
            let refused_tags: HashSet<&str> = refused.iter().map(|r| r.key.as_str()).collect();
            let mut kept = post.clone();
            kept.keys
                .retain(|key| !refused_tags.contains(key.key.as_str()));
            plausible = kept;
            &plausible
        };
        let mut reply = self.count(store, post, now_ms)?;
        reply.refused = refused;
        Ok(reply)
    }

    /// The keys of `post` whose counts from its proxy add up, over the busiest run of a
    /// window's buckets, to more than one Envoy can admit: what the post carries, with what
    /// this replica wrote for the proxy before (a post of changed buckets leaves the others
    /// out).
    fn over_bound(
        &self,
        post: &FleetSyncPost,
        now_ms: u64,
        bounding: Bounding<'_>,
    ) -> Vec<RefusedCount> {
        let frame = Frame::of(post, now_ms);
        let mut refused = Vec::new();
        for key in &post.keys {
            let held = bounds::tag_bytes(&key.key).and_then(|tag| bounding.index.get(&tag));
            let window_bounds = bounds::window_bounds(held, &post.window_ms, now_ms, bounding);
            let over = self.written.over_bound(
                &post.proxy_id,
                &key.key,
                &key.counts,
                &frame,
                &window_bounds,
            );
            if let Some((window, claimed)) = over {
                refused.push(RefusedCount {
                    key: key.key.clone(),
                    window,
                    claimed,
                    bound: window_bounds[window],
                });
            }
        }
        refused
    }

    fn count(&self, store: &Store, post: &FleetSyncPost, now_ms: u64) -> Result<FleetSyncReply> {
        let frame = Frame::of(post, now_ms);
        let rows = self
            .written
            .unwritten(&post.proxy_id, &frame, posted_rows(post, &frame));
        let reply = store.write_outside_feed(|tx| answer(tx, post, &rows, &frame, now_ms))?;
        self.written.note(&post.proxy_id, &frame, &rows);
        if due(&self.last_prune_ms, now_ms, PRUNE_INTERVAL_MS) {
            let sweep = due(&self.last_sweep_ms, now_ms, SWEEP_INTERVAL_MS);
            if sweep {
                self.written.sweep(now_ms, MAX_SPAN);
            }
            // Pruning is housekeeping: a failure (say, a deadlock with a late write of an old
            // bucket) is logged and retried later; the sync itself has been answered.
            if let Err(error) = store.write_outside_feed(|tx| prune(tx, &frame, now_ms, sweep)) {
                eprintln!("fleet counts: pruning failed: {error}");
            }
            if let Err(error) = store.write_outside_feed(analyze) {
                eprintln!("fleet counts: ANALYZE failed: {error}");
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

fn answer(
    tx: &Tx,
    post: &FleetSyncPost,
    rows: &[written::Row<'_>],
    frame: &Frame,
    now_ms: u64,
) -> Result<FleetSyncReply> {
    write_counts(tx, &post.proxy_id, rows, frame)?;
    let tags: Vec<&str> = unique_tags(post);
    let stored = read_limits(tx, &tags)?;
    // A key new to the fleet, or that only this proxy ever sent, has no other counts to read.
    let shared: Vec<&str> = tags
        .iter()
        .copied()
        .filter(|tag| {
            stored
                .get(*tag)
                .is_some_and(|row| row.sole_proxy.as_deref() != Some(post.proxy_id.as_str()))
        })
        .collect();
    let counted = read_counts(tx, &shared, &post.proxy_id, frame)?;
    let mut posted = Vec::with_capacity(post.keys.len());
    let mut changed = BTreeMap::new();
    for key in &post.keys {
        let counts = counted.get(key.key.as_str());
        let totals = counts.map_or_else(|| own_totals(key, frame), |counts| counts.totals);
        let row = stored.get(key.key.as_str());
        if let Some(limits) = updated_limits(row, key, &post.proxy_id, &totals, frame, now_ms) {
            changed.insert(key.key.as_str(), limits);
        }
        posted.push(rest_of(&key.key, key.limits, counts));
    }
    write_limits(tx, &changed)?;
    let in_post: HashSet<&str> = tags.iter().copied().collect();
    // (tag, limits, whether more than one proxy counted it)
    let candidates: Vec<(String, [Option<u64>; WINDOWS], bool)> = tx
        .query_map(
            "SELECT key_tag, per_minute, per_hour, per_day, sole_proxy IS NULL
             FROM fleet_limits WHERE hot_until_ms > ?1 ORDER BY key_tag",
            [as_i64(now_ms)],
            |row| {
                let limit = |index| -> Result<Option<u64>> {
                    Ok(row
                        .get::<Option<i64>>(index)?
                        .and_then(|v| u64::try_from(v).ok()))
                };
                let shared = row.get::<i64>(4)? != 0;
                Ok((
                    row.get::<String>(0)?,
                    [limit(1)?, limit(2)?, limit(3)?],
                    shared,
                ))
            },
        )?
        .into_iter()
        .filter(|(tag, _, _)| !in_post.contains(tag.as_str()))
        .collect();
    let candidate_tags: Vec<&str> = candidates.iter().map(|(tag, _, _)| tag.as_str()).collect();
    let counted = read_counts(tx, &candidate_tags, &post.proxy_id, frame)?;
    let hot = candidates
        .iter()
        .filter_map(|(tag, limits, shared)| {
            let counts = counted.get(tag.as_str())?;
            reply::is_pushed(limits, &counts.totals, *shared)
                .then(|| rest_of(tag, *limits, Some(counts)))
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

/// Every positive count of the post worth keeping, one per (key, window, bucket), sorted.
fn posted_rows<'a>(post: &'a FleetSyncPost, frame: &Frame) -> Vec<written::Row<'a>> {
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
    rows.into_iter().collect()
}

/// What the post itself counted inside the frame's windows.
fn own_totals(key: &KeyCounts, frame: &Frame) -> [u64; WINDOWS] {
    std::array::from_fn(|window| {
        key.counts[window]
            .iter()
            .filter(|(bucket, _)| frame.inside(window, *bucket))
            .map(|(_, count)| (*count).min(MAX_COUNT))
            .fold(0, u64::saturating_add)
    })
}

/// Raises `proxy`'s counts to `rows` (never lowers one), in key order.
fn write_counts(tx: &Tx, proxy: &str, rows: &[written::Row<'_>], frame: &Frame) -> Result<()> {
    for chunk in rows.chunks(UPSERT_ROWS) {
        let rows: Vec<(&str, i64, i64, i64, i64)> = chunk
            .iter()
            .map(|((tag, window, bucket), count)| {
                let window_index = as_i64(*window as u64);
                let width = as_i64(frame.bucket_ms[*window]);
                (*tag, window_index, width, as_i64(*bucket), as_i64(*count))
            })
            .collect();
        tx.execute(
            &format!(
                "INSERT INTO fleet_counts (key_tag, win, bucket_ms, bucket, proxy, count)
                 SELECT r.value ->> 0, CAST(r.value ->> 1 AS BIGINT),
                        CAST(r.value ->> 2 AS BIGINT), CAST(r.value ->> 3 AS BIGINT), ?2,
                        CAST(r.value ->> 4 AS BIGINT)
                 FROM {} WHERE true
                 ON CONFLICT (key_tag, win, bucket_ms, bucket, proxy)
                 DO UPDATE SET count = excluded.count WHERE excluded.count > fleet_counts.count",
                json_rows(tx.dialect(), 1, "r")
            ),
            params![json_array(&rows)?, proxy],
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
        values.push(json_array(chunk)?.to_value());
        let rows = tx.query(
            &format!(
                "{} UNION ALL {} UNION ALL {}",
                window_sums(tx.dialect(), 0),
                window_sums(tx.dialect(), 1),
                window_sums(tx.dialect(), 2)
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

/// The sums per (key, bucket) of one window (`?1` the caller, `?2`…`?7` the windows' widths and
/// oldest buckets, `?8` the keys), one primary-key range per key. On PostgreSQL the keys are
/// joined laterally: planning from a young table's statistics, a plain `IN` may otherwise scan
/// every row of the window through the pruning index.
fn window_sums(dialect: Dialect, window: usize) -> String {
    let (width, oldest) = (2 + 2 * window, 3 + 2 * window);
    let sums = "CAST(SUM(count) AS BIGINT), \
                CAST(SUM(CASE WHEN proxy = ?1 THEN count ELSE 0 END) AS BIGINT)";
    match dialect {
        Dialect::Sqlite => format!(
            "SELECT key_tag, win, bucket, {sums} FROM fleet_counts
             WHERE key_tag IN ({}) AND win = {window} AND bucket_ms = ?{width}
               AND bucket >= ?{oldest}
             GROUP BY key_tag, win, bucket",
            json_texts(dialect, 8)
        ),
        Dialect::Postgres => format!(
            "SELECT key_tag, win, bucket, {sums}
             FROM json_array_elements_text(CAST(CAST(?8 AS TEXT) AS json)) AS t
             CROSS JOIN LATERAL (
                 SELECT key_tag, win, bucket, count, proxy FROM fleet_counts
                 WHERE key_tag = t.value AND win = {window} AND bucket_ms = ?{width}
                   AND bucket >= ?{oldest}) AS c
             GROUP BY key_tag, win, bucket"
        ),
    }
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

/// Forgets the counts of the frame's bucket widths older than their window plus a bucket; on a
/// sweep also rows of any width older than the longest possible window, and the limits of keys
/// no Envoy sent for two days that have no counts left (a key's row must outlive its counts:
/// its `sole_proxy` says whether there are others' counts to read).
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
            "DELETE FROM fleet_limits WHERE seen_ms < ?1 AND hot_until_ms < ?2
               AND NOT EXISTS (SELECT 1 FROM fleet_counts c WHERE c.key_tag = fleet_limits.key_tag)",
            [
                as_i64(now_ms.saturating_sub(LIMITS_RETENTION_MS)),
                as_i64(now_ms),
            ],
        )?;
    }
    Ok(forgotten)
}

/// Refreshes PostgreSQL's statistics of the counts. The table fills and empties within minutes,
/// faster than autovacuum looks at it, and planned from stale statistics ("a few rows") the
/// reads take the pruning index and scan a whole window instead of one key's rows. Sampled, so
/// cheap (tens of ms) at the pruning's pace.
fn analyze(tx: &Tx) -> Result<()> {
    if tx.dialect() == Dialect::Postgres {
        tx.execute_batch("ANALYZE fleet_counts")?;
    }
    Ok(())
}

pub(super) fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn as_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
