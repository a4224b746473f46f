//! What a replica shares through Redis, and what it takes back: the pure half of the flush
//! (`fleet::redis` is the other half, the round trip).
//!
//! A key is **published** once this replica's own Envoys have admitted, in some window, at least
//! `1 / (2 × replicas)` of its limit (`Warmth`), or once another replica announced it. Below that
//! share at every replica the whole fleet has admitted less than half the limit, which the half-
//! limit rule of `reply::is_hot` already leaves room for; so keys far from their limits (most of
//! them) never cost Redis anything. A published key stays published while this replica holds
//! counts of it or Redis holds totals of it.
//!
//! Each flush writes, per published key, every proxy count that grew since the last flush
//! (absolute counts: Redis keeps the highest per proxy and bucket, so a retry, or an Envoy whose
//! syncs move between replicas, never counts twice), and reads back the fleet's totals.

use super::{Counts, KeyState};
use keygate_contract::fleet::WINDOWS;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// When a replica publishes a key of its own accord.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmth {
    /// Its Envoys admitted `limit / (2 × replicas)` in some window (`replicas`: live replicas).
    ShareOf { replicas: u64 },
    /// Every key with a limit (a replica before its first flush; tests: the same answers as
    /// one process holding everything).
    Always,
}

impl Warmth {
    pub(super) fn is_warm(
        self,
        limits: &[Option<u64>; WINDOWS],
        admitted: &[u64; WINDOWS],
    ) -> bool {
        (0..WINDOWS).any(|window| match (self, limits[window]) {
            (_, None | Some(0)) => false,
            (Warmth::Always, Some(_)) => true,
            (Warmth::ShareOf { replicas }, Some(limit)) => {
                admitted[window]
                    .saturating_mul(2)
                    .saturating_mul(replicas.max(1))
                    >= limit
            }
        })
    }
}

/// A key another replica (or this one) started publishing, as announced in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    pub tag: String,
    pub limits: [Option<u64>; WINDOWS],
}

/// One proxy's count of one bucket that grew since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raise {
    pub window: usize,
    pub bucket_ms: u64,
    pub bucket: u64,
    pub proxy: Arc<str>,
    pub count: u64,
    /// How long Redis keeps this bucket's per-proxy counts: until it has left its window.
    pub keep_ms: u64,
}

/// What one published key writes in a flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFlush {
    pub tag: String,
    pub limits: [Option<u64>; WINDOWS],
    pub raised: Vec<Raise>,
}

/// One flush: the writes, the keys only read, the keys to announce, and which totals Redis
/// forgets (per window and bucket width: buckets below the given one).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flush {
    pub keys: Vec<KeyFlush>,
    pub read: Vec<String>,
    pub announce: Vec<PublishedKey>,
    pub forget_below: Vec<(usize, u64, u64)>,
}

/// A key's totals as Redis holds them: its limits as last written, and `(window, bucket_ms,
/// bucket) → fleet-wide count`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyTotals {
    pub limits: Option<[Option<u64>; WINDOWS]>,
    /// More than one proxy wrote counts of the key.
    pub shared: bool,
    pub buckets: Vec<((usize, u64, u64), u64)>,
}

/// Totals read in a flush, by key tag (a key Redis holds nothing of is absent).
pub type Totals = HashMap<String, KeyTotals>;

/// Published keys none of this replica's Envoys counted, that only one proxy counted and that
/// were not hot when last read are read back every this many flushes (once a second); the
/// others every flush. Each replica learns every key published anywhere, so reading them all
/// every flush made Redis's work grow with the fleet's published keys × replicas × 4 a second.
/// Such a key is in no answer of this replica (it is not pushed: `reply::is_pushed`) until one
/// of its Envoys sends it, and then it is below half its limit fleet-wide, the room the
/// half-limit rule already leaves for Envoys that have not heard of a key.
const READ_UNHELD_EVERY: u64 = 4;

/// Proxy counts one flush writes at most; the keys past it wait for the next flush. A replica
/// that publishes many keys at once (its start, Redis back after an outage) writes them over a
/// few flushes instead of in one that outlasts its timeout and is retried whole, forever.
const MAX_FLUSH_ENTRIES: usize = 20_000;

impl Counts {
    /// Publishes the keys that became warm and collects what to write and read. Costs the keys
    /// synced since the last flush plus the published ones, never every key held.
    pub fn take_flush(&mut self, warmth: Warmth, now_ms: u64) -> Flush {
        self.warmth = Some(warmth);
        let mut flush = Flush {
            forget_below: self.forget_below(now_ms),
            announce: std::mem::take(&mut self.announce_again),
            ..Flush::default()
        };
        let mut entries = 0;
        let mut touched = std::mem::take(&mut self.touched).into_iter();
        for tag in touched.by_ref() {
            let Some(state) = self.keys.get_mut(&tag) else {
                continue;
            };
            if !state.published && warmth.is_warm(&state.limits, &state.local) {
                state.published = true;
                state.all_dirty = true;
                self.published.insert(tag.clone());
                flush.announce.push(PublishedKey {
                    tag: tag.clone(),
                    limits: state.limits,
                });
            }
            if !state.published {
                continue;
            }
            let raised = state.take_raised(&self.frames, now_ms);
            if !raised.is_empty() {
                entries += raised.len();
                flush.keys.push(KeyFlush {
                    tag,
                    limits: state.limits,
                    raised,
                });
            }
            if entries >= MAX_FLUSH_ENTRIES {
                break;
            }
        }
        // Past the budget: the next flush takes them (their dirty buckets are untouched).
        self.touched.extend(touched);
        let written: HashSet<&str> = flush.keys.iter().map(|key| key.tag.as_str()).collect();
        self.flushes_taken = self.flushes_taken.wrapping_add(1);
        let read_all = self.flushes_taken.is_multiple_of(READ_UNHELD_EVERY);
        let keys = &self.keys;
        flush.read = self
            .published
            .iter()
            .filter(|tag| !written.contains(tag.as_str()))
            .filter(|tag| read_all || keys.get(tag.as_str()).is_some_and(KeyState::read_often))
            .cloned()
            .collect();
        flush
    }

    /// A flush that failed: its keys, the buckets it wrote of them and its announcements are
    /// taken again by the next one.
    pub fn retake(&mut self, flush: &Flush) {
        for key in &flush.keys {
            if let Some(state) = self.keys.get_mut(&key.tag) {
                for raise in &key.raised {
                    state.note_dirty((raise.window, raise.bucket_ms, raise.bucket));
                }
            }
        }
        self.touched
            .extend(flush.keys.iter().map(|key| key.tag.clone()));
        self.announce_again.extend(flush.announce.iter().cloned());
    }

    /// Notes a flush Redis accepted, with the totals it read back.
    pub fn apply_flush(&mut self, flush: &Flush, totals: &Totals) {
        for key in &flush.keys {
            if let Some(state) = self.keys.get_mut(&key.tag) {
                state.note_flushed(&key.raised);
            }
        }
        let read = flush
            .keys
            .iter()
            .map(|key| &key.tag)
            .chain(flush.read.iter());
        for tag in read {
            let Some(state) = self.keys.get_mut(tag) else {
                continue;
            };
            state.set_remote(totals.get(tag));
            if state.is_empty() {
                self.keys.remove(tag);
                self.pushed.remove(tag);
                self.published.remove(tag);
            } else {
                self.judge_read(tag);
            }
        }
    }

    /// Publishes keys announced in Redis: this replica writes its counts of them too and reads
    /// their totals, even if none of its Envoys sent them yet.
    pub fn learn_published(&mut self, announced: &[PublishedKey]) {
        for key in announced {
            let state = self.keys.entry(key.tag.clone()).or_default();
            if state.is_empty() {
                state.limits = key.limits;
            }
            if !state.published {
                // Its counts held here are written in full by the next flush.
                state.published = true;
                state.all_dirty = true;
                self.published.insert(key.tag.clone());
                self.touched.insert(key.tag.clone());
            }
        }
    }

    /// Redis lost what it held (a restart without persistence, a flush of its data): everything
    /// is written again in full, and every published key announced again, by the next flush.
    /// Answers how many keys that is.
    pub fn forget_flushed(&mut self) -> usize {
        let mut announce = Vec::new();
        for (tag, state) in &mut self.keys {
            for buckets in &mut state.windows {
                for bucket in buckets.values_mut() {
                    bucket.remote = 0;
                    bucket.flushed = 0;
                    for proxy in &mut bucket.proxies {
                        proxy.flushed = 0;
                    }
                }
            }
            if state.published {
                state.all_dirty = true;
                self.touched.insert(tag.clone());
                announce.push(PublishedKey {
                    tag: tag.clone(),
                    limits: state.limits,
                });
            }
        }
        let count = announce.len();
        self.announce_again = announce;
        count
    }

    /// Keys published here (a gauge).
    pub fn published_count(&self) -> usize {
        self.published.len()
    }

    /// Per (window, bucket width) in use: below which bucket counts are forgotten, as the sweep
    /// computes it.
    fn forget_below(&self, now_ms: u64) -> Vec<(usize, u64, u64)> {
        self.frames
            .iter()
            .map(|(&(window, bucket_ms), &(newest, span))| {
                let clock = now_ms / bucket_ms.max(1);
                (window, bucket_ms, newest.min(clock).saturating_sub(span))
            })
            .collect()
    }
}

impl KeyState {
    /// Every proxy count that grew in the buckets raised since the last flush (every bucket
    /// when `all_dirty`), which are then clean: a flush that fails makes them dirty again.
    fn take_raised(
        &mut self,
        frames: &HashMap<(usize, u64), (u64, u64)>,
        now_ms: u64,
    ) -> Vec<Raise> {
        let mut dirty = std::mem::take(&mut self.dirty);
        if std::mem::take(&mut self.all_dirty) {
            dirty = (0..WINDOWS)
                .flat_map(|window| {
                    self.windows[window]
                        .keys()
                        .map(move |&(bucket_ms, bucket)| (window, bucket_ms, bucket))
                })
                .collect();
        }
        let mut raised = Vec::new();
        for (window, bucket_ms, bucket) in dirty {
            let Some(counts) = self.windows[window].get(&(bucket_ms, bucket)) else {
                continue;
            };
            let span = frames
                .get(&(window, bucket_ms))
                .map_or(1, |&(_, span)| span);
            // Until the bucket has left its window by the clock, plus a bucket of slack.
            let leaves_ms = bucket
                .saturating_add(span)
                .saturating_add(2)
                .saturating_mul(bucket_ms.max(1));
            let keep_ms = leaves_ms.saturating_sub(now_ms).max(1_000);
            for proxy in counts.proxies.iter().filter(|p| p.count > p.flushed) {
                raised.push(Raise {
                    window,
                    bucket_ms,
                    bucket,
                    proxy: Arc::clone(&proxy.proxy),
                    count: proxy.count,
                    keep_ms,
                });
            }
        }
        raised
    }

    fn note_flushed(&mut self, raised: &[Raise]) {
        for raise in raised {
            let Some(bucket) = self.windows[raise.window].get_mut(&(raise.bucket_ms, raise.bucket))
            else {
                continue;
            };
            if let Ok(at) = bucket.position(&raise.proxy) {
                let proxy = &mut bucket.proxies[at];
                proxy.flushed = proxy.flushed.max(raise.count).min(proxy.count);
            }
            bucket.flushed = bucket
                .proxies
                .iter()
                .map(|p| p.flushed)
                .fold(0, u64::saturating_add);
        }
    }

    /// Takes Redis's totals (none: it holds nothing of the key) as the fleet's.
    fn set_remote(&mut self, totals: Option<&KeyTotals>) {
        for buckets in &mut self.windows {
            buckets.retain(|_, bucket| {
                bucket.remote = 0;
                !bucket.proxies.is_empty()
            });
        }
        let Some(totals) = totals else {
            return;
        };
        self.shared |= totals.shared;
        if let Some(limits) = totals.limits {
            if self
                .windows
                .iter()
                .all(|buckets| buckets.values().all(|bucket| bucket.proxies.is_empty()))
            {
                // Only the fleet counts it: its limits are the ones last written there.
                self.limits = limits;
            }
        }
        for &((window, bucket_ms, bucket), total) in &totals.buckets {
            if window < WINDOWS && total > 0 {
                self.windows[window]
                    .entry((bucket_ms, bucket))
                    .or_default()
                    .remote = total;
            }
        }
    }

    /// Whether every flush reads it back (`READ_UNHELD_EVERY`).
    fn read_often(&self) -> bool {
        self.local.iter().any(|&admitted| admitted > 0)
            || self.shared
            || self.read_hot
            || !self.read_once
    }
}

#[cfg(test)]
mod tests;
