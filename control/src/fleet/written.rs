//! What this replica last wrote to the database per (proxy, key, window, bucket), so a sync
//! writes only the counts that grew: an Envoy resends every bucket of a key in each sync, and
//! all but the newest are usually unchanged. Skipping a row is safe whenever the database holds
//! at least what this replica wrote (counts are only ever raised); the cache is updated only
//! after a commit, and forgets buckets as the database does.

use crate::fleet::bounds;
use crate::fleet::frame::Frame;
use crate::fleet::MAX_COUNT;
use keygate_contract::fleet::WINDOWS;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// `(window, bucket_ms, bucket)` → count.
type Buckets = Vec<((usize, u64, u64), u64)>;

/// A row to write: `(key tag, window, bucket)` and the count.
pub type Row<'a> = ((&'a str, usize, u64), u64);

#[derive(Debug, Default)]
pub struct Written {
    /// proxy → key tag → what was written.
    by_proxy: Mutex<HashMap<String, HashMap<String, Buckets>>>,
}

impl Written {
    /// The rows of `rows` (sorted) that would raise what this replica wrote.
    pub fn unwritten<'a>(&self, proxy: &str, frame: &Frame, rows: Vec<Row<'a>>) -> Vec<Row<'a>> {
        let by_proxy = self.lock();
        let Some(keys) = by_proxy.get(proxy) else {
            return rows;
        };
        rows.into_iter()
            .filter(|((tag, window, bucket), count)| {
                let written = keys.get(*tag).and_then(|buckets| {
                    buckets
                        .iter()
                        .find(|(at, _)| *at == (*window, frame.bucket_ms[*window], *bucket))
                });
                !matches!(written, Some((_, held)) if held >= count)
            })
            .collect()
    }

    /// Notes `rows` as committed, and forgets the buckets of the keys they touch that the frame
    /// forgets.
    pub fn note(&self, proxy: &str, frame: &Frame, rows: &[Row<'_>]) {
        let mut by_proxy = self.lock();
        let keys = by_proxy.entry(proxy.to_string()).or_default();
        for ((tag, window, bucket), count) in rows {
            let buckets = keys.entry((*tag).to_string()).or_default();
            buckets.retain(|((w, ms, b), _)| {
                *w != *window || *ms != frame.bucket_ms[*w] || *b >= frame.forget_below[*w]
            });
            let at = (*window, frame.bucket_ms[*window], *bucket);
            match buckets.iter_mut().find(|(held_at, _)| *held_at == at) {
                Some((_, held)) => *held = (*held).max(*count),
                None => buckets.push((at, *count)),
            }
        }
    }

    /// The first window in which `proxy`'s counts of key `tag` over their busiest run of
    /// buckets (`bounds::busiest_run`, the window's span plus one) exceed `bounds`, with that
    /// sum: the post's `counts` where it carries a bucket, else what this replica last wrote.
    /// Summed bucket by bucket only where all of them together exceed the bound (most keys
    /// are far below it), so a sync allocates nothing for them.
    pub fn over_bound(
        &self,
        proxy: &str,
        tag: &str,
        counts: &[Vec<(u64, u64)>; WINDOWS],
        frame: &Frame,
        bounds: &[u64; WINDOWS],
    ) -> Option<(usize, u64)> {
        let by_proxy = self.lock();
        let written = by_proxy.get(proxy).and_then(|keys| keys.get(tag));
        let of_window = |window: usize| {
            let width = frame.bucket_ms[window];
            written
                .into_iter()
                .flatten()
                .filter(move |((w, ms, _), _)| *w == window && *ms == width)
                .map(|((_, _, bucket), count)| (*bucket, *count))
        };
        (0..WINDOWS).find_map(|window| {
            let at_most = of_window(window)
                .map(|(_, count)| count)
                .chain(
                    counts[window]
                        .iter()
                        .map(|(_, count)| (*count).min(MAX_COUNT)),
                )
                .fold(0, u64::saturating_add);
            if at_most <= bounds[window] {
                return None;
            }
            let mut buckets: BTreeMap<u64, u64> = of_window(window).collect();
            for &(bucket, count) in &counts[window] {
                let held = buckets.entry(bucket).or_insert(0);
                *held = (*held).max(count.min(MAX_COUNT));
            }
            let buckets: Vec<(u64, u64)> = buckets.into_iter().collect();
            let busiest = bounds::busiest_run(&buckets, frame.span[window].saturating_add(1));
            (busiest > bounds[window]).then_some((window, busiest))
        })
    }

    /// Forgets every bucket older than `max_span` buckets before `now_ms`, and what is left empty.
    pub fn sweep(&self, now_ms: u64, max_span: u64) {
        let mut by_proxy = self.lock();
        by_proxy.retain(|_, keys| {
            keys.retain(|_, buckets| {
                buckets.retain(|((_, bucket_ms, bucket), _)| {
                    bucket.saturating_add(max_span) >= now_ms / (*bucket_ms).max(1)
                });
                !buckets.is_empty()
            });
            !keys.is_empty()
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Buckets>>> {
        // Every entry is only a hint that the database holds at least this much; a panic
        // elsewhere cannot make one wrong, so a poisoned lock is taken over.
        self.by_proxy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
