//! An in-process stand-in for what Redis does with a flush (`fleet::redis`'s script), so the
//! sync's semantics can be tested on replicas without a server: per proxy the highest count,
//! per bucket their total, per key the limits; forgotten buckets leave the totals.

use super::{Flush, KeyTotals, PublishedKey, Totals};
use std::collections::HashMap;
use std::sync::Mutex;

/// (window, bucket_ms, bucket) → proxy → count.
type Buckets = HashMap<(usize, u64, u64), HashMap<String, u64>>;

#[derive(Debug, Default)]
pub struct FakeRedis {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By key tag.
    counts: HashMap<String, Buckets>,
    limits: HashMap<String, [Option<u64>; 3]>,
    announced: Vec<PublishedKey>,
}

impl FakeRedis {
    /// Writes `flush` and answers its totals and the announcements from `seen` on.
    pub fn exchange(&self, flush: &Flush, seen: &mut usize) -> (Totals, Vec<PublishedKey>) {
        let mut inner = self.inner.lock().unwrap();
        inner.announced.extend(flush.announce.iter().cloned());
        for key in &flush.keys {
            inner.limits.insert(key.tag.clone(), key.limits);
            let buckets = inner.counts.entry(key.tag.clone()).or_default();
            for raise in &key.raised {
                let proxies = buckets
                    .entry((raise.window, raise.bucket_ms, raise.bucket))
                    .or_default();
                let held = proxies.entry(raise.proxy.to_string()).or_insert(0);
                *held = (*held).max(raise.count);
            }
        }
        let mut totals = Totals::new();
        let tags = flush.keys.iter().map(|key| &key.tag).chain(&flush.read);
        for tag in tags {
            let limits = inner.limits.get(tag).copied();
            let Some(buckets) = inner.counts.get_mut(tag) else {
                continue;
            };
            buckets.retain(|(window, bucket_ms, bucket), _| {
                !flush
                    .forget_below
                    .iter()
                    .any(|(w, ms, below)| w == window && ms == bucket_ms && bucket < below)
            });
            let summed = buckets
                .iter()
                .map(|(&at, proxies)| (at, proxies.values().sum()))
                .collect();
            let writers: std::collections::HashSet<&String> = buckets
                .values()
                .flat_map(|proxies| proxies.keys())
                .collect();
            totals.insert(
                tag.clone(),
                KeyTotals {
                    limits,
                    shared: writers.len() > 1,
                    buckets: summed,
                },
            );
        }
        let news = inner.announced[(*seen).min(inner.announced.len())..].to_vec();
        *seen = inner.announced.len();
        (totals, news)
    }

    /// Loses everything, as a Redis restarted without persistence does.
    pub fn lose_everything(&self) {
        *self.inner.lock().unwrap() = Inner::default();
    }
}
