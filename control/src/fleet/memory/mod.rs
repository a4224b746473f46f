//! The fleet's counts in this process's memory: every Envoy's absolute count per key, window and
//! bucket that syncs with this process, their sums, each key's latest limits and the set of hot
//! keys. After a restart the Envoys' next syncs rebuild it.
//!
//! A single control service (SQLite) holds the whole fleet here. Replicas sharing a Redis hold
//! their own Envoys' counts here too and, for the keys they publish (`publish.rs`), the fleet's
//! totals as last read from Redis: a bucket's fleet-wide count is then what Redis holds plus
//! what this replica's Envoys admitted since its last flush.

mod bucket;
mod forget;
mod publish;
#[cfg(test)]
pub mod redis_fake;

pub use publish::{Flush, KeyTotals, PublishedKey, Raise, Totals, Warmth};

use crate::fleet::bounds::{self, Bounding, Held};
use crate::fleet::frame::Frame;
use crate::fleet::reply::{self, Rest};
use crate::fleet::MAX_COUNT;
use bucket::Bucket;
use keygate_contract::fleet::{FleetSyncPost, FleetSyncReply, KeyCounts, RefusedCount, WINDOWS};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// How often every key is swept for counts older than their window (keys in a sync are pruned
/// as they are counted; this catches keys no Envoy sends any more).
const SWEEP_INTERVAL_MS: u64 = 5_000;

#[derive(Debug, Default)]
pub struct Counts {
    keys: HashMap<String, KeyState>,
    /// Keys pushed to every Envoy that syncs (`reply::is_pushed`) when last counted, or
    /// candidates a flush read fleet totals of; every answer re-checks them, and keys that
    /// cooled down leave. Only these are checked per answer: checking every hot key would cost
    /// each sync the fleet's size (each Envoy's own keys near their limits).
    pushed: HashSet<String>,
    /// The frame of the latest sync: flushes judge the keys they read by it.
    last_frame: Option<Frame>,
    /// Per (window, bucket width): the newest bucket a sync was framed at and the window's
    /// span, so the sweep forgets by the Envoys' time.
    frames: HashMap<(usize, u64), (u64, u64)>,
    last_sweep_ms: u64,
    /// Replicas: keys synced since the last flush took them that are published or warm by
    /// `warmth` (only these can have something to write), and the keys published here (read
    /// back each flush).
    touched: HashSet<String>,
    /// Replicas: when keys are published, as the last flush judged it (`None`: one process
    /// holding every count, which never flushes).
    warmth: Option<Warmth>,
    /// Flushes taken so far (`publish::READ_UNHELD_EVERY`).
    flushes_taken: u64,
    published: HashSet<String>,
    /// Published keys to announce again (Redis lost the announcements).
    announce_again: Vec<publish::PublishedKey>,
    /// Each proxy's name once: a bucket finds a proxy's count by comparing pointers, not names
    /// (with tens of Envoys per replica sharing a key, comparing names was a tenth of a sync's
    /// CPU). Names no bucket holds any more are dropped by the sweep.
    proxy_names: HashSet<Arc<str>>,
}

#[derive(Debug, Default)]
struct KeyState {
    /// The key's own limits when the limits index holds them, else what posts declare.
    limits: [Option<u64>; WINDOWS],
    /// What the limits index held for the key at generation `held_generation` (`None`: never
    /// looked), so a sync looks it up again only after the index changed.
    held: Option<Held>,
    held_generation: Option<u64>,
    /// Its counts are shared through Redis (replicas only): this replica flushes what its Envoys
    /// admitted and reads the fleet's totals back.
    published: bool,
    /// The first proxy that counted it, and whether another one has since (here or, as Redis
    /// says, anywhere): only keys of several proxies are pushed to proxies that never sent them.
    first_proxy: Option<Arc<str>>,
    shared: bool,
    /// Published keys: the buckets raised since the last flush took them (`(window, bucket_ms,
    /// bucket)`), or every bucket (`all_dirty`: just published, or Redis lost its data). A flush
    /// looks at these only: looking at every bucket of every Envoy of every published key
    /// held the counts' lock for most of each flush.
    dirty: Vec<(usize, u64, u64)>,
    all_dirty: bool,
    /// Replicas: its totals were read from Redis at least once, and were hot when last read
    /// (by the latest sync's frame). A flush reads it back every time while it was never read,
    /// was hot, or is held here or shared; otherwise every `publish::READ_UNHELD_EVERY` flushes.
    read_once: bool,
    read_hot: bool,
    /// Per window: the bucket width and bucket below which `forget` last forgot.
    forgot_below: [(u64, u64); WINDOWS],
    /// Per window: what this process's Envoys admitted over every bucket held (the window's
    /// plus at most a bucket of slack), kept as counts rise and buckets leave.
    local: [u64; WINDOWS],
    /// Per window: `(bucket_ms, bucket)` → counts. Envoys with other bucket widths (a rollout of
    /// new window settings) are counted apart, never mixed.
    windows: [BTreeMap<(u64, u64), Bucket>; WINDOWS],
}

/// Adds `tag` to `set`, copying it only when it is not there yet (the entry API would copy it
/// on every sync).
fn insert_tag(set: &mut HashSet<String>, tag: &str) {
    if !set.contains(tag) {
        set.insert(tag.to_string());
    }
}

impl KeyState {
    /// Looks the key's limits up in the index, unless it has not changed since the last look.
    fn look_up(&mut self, tag: &str, bounding: Bounding<'_>) {
        let generation = bounding.index.generation();
        if self.held_generation != Some(generation) {
            self.held = bounds::tag_bytes(tag).and_then(|tag| bounding.index.get(&tag));
            self.held_generation = Some(generation);
        }
    }

    /// The first window in which `proxy`'s counts over its busiest run of the window's buckets
    /// (the filter's ring: the window's span plus one; `bounds::busiest_run`) add up to more
    /// than `bounds`, with that sum. Summed only where this process's counts of the key (every
    /// proxy's, in every bucket held: a cheap bound on one's) exceed the bound, so keys far
    /// from their limits cost nothing more. `scratch` is reused between keys.
    fn over_bound(
        &self,
        proxy: &Arc<str>,
        frame: &Frame,
        bounds: &[u64; WINDOWS],
        scratch: &mut Vec<(u64, u64)>,
    ) -> Option<(usize, u64)> {
        (0..WINDOWS)
            .filter(|&window| self.local[window] > bounds[window])
            .find_map(|window| {
                let width = frame.bucket_ms[window];
                let mut guess = 0;
                scratch.clear();
                scratch.extend(
                    self.windows[window]
                        .range((width, 0)..=(width, u64::MAX))
                        .map(|(&(_, at), bucket)| (at, bucket.of_near(proxy, &mut guess)))
                        .filter(|(_, count)| *count > 0),
                );
                let own = bounds::busiest_run(scratch, frame.span[window].saturating_add(1));
                (own > bounds[window]).then_some((window, own))
            })
    }

    /// Undoes `raised` (`(window, bucket, count before)`, in the order raised) for `proxy`.
    /// A bucket left with no count and no fleet total read from Redis (one the post created)
    /// goes.
    fn undo(&mut self, proxy: &Arc<str>, raised: &[(usize, (u64, u64), u64)]) {
        for &(window, at, before) in raised.iter().rev() {
            let Some(bucket) = self.windows[window].get_mut(&at) else {
                continue;
            };
            let fell = bucket.lower(proxy, before);
            self.local[window] = self.local[window].saturating_sub(fell);
            if bucket.proxies.is_empty() && bucket.remote == 0 {
                self.windows[window].remove(&at);
            }
        }
    }

    fn note_dirty(&mut self, bucket: (usize, u64, u64)) {
        if !self.all_dirty && !self.dirty.contains(&bucket) {
            self.dirty.push(bucket);
        }
    }

    /// Forgets the buckets of width `bucket_ms` below `below` (usually none or one), unless
    /// the last call already did for that width (most syncs: a minute bucket leaves every 2 s,
    /// and looking was a tenth of a sync's CPU at 500 Envoys). A bucket a skewed Envoy's post
    /// adds below it meanwhile stays until the sweep (`forget_all`); answers skip it, being
    /// outside every frame's window.
    fn forget(&mut self, window: usize, bucket_ms: u64, below: u64) {
        if self.forgot_below[window] == (bucket_ms, below) {
            return;
        }
        self.forget_all(window, bucket_ms, below);
        self.forgot_below[window] = (bucket_ms, below);
    }

    /// Forgets the buckets of width `bucket_ms` below `below`, looking every time.
    fn forget_all(&mut self, window: usize, bucket_ms: u64, below: u64) {
        let buckets = &mut self.windows[window];
        while let Some(old) = buckets
            .range((bucket_ms, 0)..(bucket_ms, below))
            .next()
            .map(|(bucket, _)| *bucket)
        {
            if let Some(removed) = buckets.remove(&old) {
                self.local[window] = self.local[window].saturating_sub(removed.total);
            }
        }
    }

    /// Whether no window's limit can have been reached: what this process's Envoys admitted is
    /// below every limit (a cheap bound: for a key no other Envoy or replica counted, it is
    /// the fleet's count).
    fn below_every_limit(&self) -> bool {
        (0..WINDOWS).all(|window| match self.limits[window] {
            Some(limit) if limit > 0 => self.local[window] < limit,
            _ => true,
        })
    }

    fn is_empty(&self) -> bool {
        self.windows.iter().all(BTreeMap::is_empty)
    }

    /// Fleet totals per window, inside the frame's windows.
    fn totals(&self, frame: &Frame) -> [u64; WINDOWS] {
        let mut totals = [0; WINDOWS];
        for (window, total) in totals.iter_mut().enumerate() {
            *total = self
                .inside(frame, window)
                .map(|(_, bucket)| bucket.fleet_total())
                .fold(0, u64::saturating_add);
        }
        totals
    }

    fn inside<'a>(
        &'a self,
        frame: &'a Frame,
        window: usize,
    ) -> impl Iterator<Item = (u64, &'a Bucket)> + 'a {
        let bucket_ms = frame.bucket_ms[window];
        let from = (bucket_ms, frame.oldest_inside(window));
        self.windows[window]
            .range(from..)
            .take_while(move |((ms, _), _)| *ms == bucket_ms)
            .filter(move |((_, bucket), _)| frame.inside(window, *bucket))
            .map(|((_, bucket), counts)| (*bucket, counts))
    }

    /// What every Envoy but `proxy` admitted, per bucket inside the frame's windows; `totals`
    /// are the key's (`totals`). Nothing for a key only `proxy` ever counted here and no other
    /// replica shares (most keys: a customer's traffic through one pod).
    fn rest(&self, tag: &str, proxy: &Arc<str>, frame: &Frame, totals: &[u64; WINDOWS]) -> Rest {
        let mut counts: [Vec<(u64, u64)>; WINDOWS] = Default::default();
        let only_proxy = !self.shared
            && !self.published
            && self
                .first_proxy
                .as_ref()
                .is_some_and(|first| Arc::ptr_eq(first, proxy));
        for (window, rest) in counts.iter_mut().enumerate().filter(|_| !only_proxy) {
            let mut guess = 0;
            *rest = self
                .inside(frame, window)
                .map(|(bucket, counts)| {
                    let own = counts.of_near(proxy, &mut guess);
                    (bucket, counts.fleet_total().saturating_sub(own))
                })
                .filter(|(_, count)| *count > 0)
                .collect();
        }
        Rest {
            heat: reply::heat(&self.limits, totals),
            key: KeyCounts {
                key: tag.to_string(),
                limits: self.limits,
                counts,
            },
        }
    }
}

impl Counts {
    /// A replica's counts, shared through Redis: until the first flush says how many replicas
    /// there are, every key with a limit is a candidate to publish.
    pub fn replicated() -> Counts {
        Counts {
            warmth: Some(Warmth::Always),
            ..Counts::default()
        }
    }

    /// Counts a validated `post` received at `now_ms` and answers it.
    /// A key whose counts from `post.proxy_id` add up, in some window, to more than one Envoy
    /// can admit (`bounding`) is not counted (what the post raised is undone) and is named in
    /// the answer's `refused`.
    pub fn sync(
        &mut self,
        post: &FleetSyncPost,
        now_ms: u64,
        bounding: Bounding<'_>,
    ) -> FleetSyncReply {
        let frame = Frame::of(post, now_ms);
        for window in 0..WINDOWS {
            let newest = self
                .frames
                .entry((window, frame.bucket_ms[window]))
                .or_insert((0, 0));
            *newest = (newest.0.max(frame.current[window]), frame.span[window]);
        }
        let proxy = self.intern(&post.proxy_id);
        let mut posted = Vec::with_capacity(post.keys.len());
        let mut refused = Vec::new();
        // This key's raises: (window, bucket, the count before), to undo a refused one.
        let mut raised: Vec<(usize, (u64, u64), u64)> = Vec::new();
        let mut scratch = Vec::new();
        for key in &post.keys {
            // Looked up before inserting: the entry API would copy the tag on every sync.
            let is_new = !self.keys.contains_key(&key.key);
            if is_new {
                self.keys.insert(key.key.clone(), KeyState::default());
            }
            let Some(state) = self.keys.get_mut(&key.key) else {
                continue;
            };
            state.look_up(&key.key, bounding);
            raised.clear();
            for window in 0..WINDOWS {
                state.forget(window, frame.bucket_ms[window], frame.forget_below[window]);
                for &(bucket, count) in &key.counts[window] {
                    if count > 0 && frame.kept(window, bucket) {
                        let bucket_ms = frame.bucket_ms[window];
                        let count = count.min(MAX_COUNT);
                        let rose = state.windows[window]
                            .entry((bucket_ms, bucket))
                            .or_default()
                            .raise(&proxy, count);
                        if rose > 0 {
                            state.local[window] = state.local[window].saturating_add(rose);
                            raised.push((window, (bucket_ms, bucket), count - rose));
                            if state.published {
                                state.note_dirty((window, bucket_ms, bucket));
                            }
                        }
                    }
                }
            }
            let bounds = bounds::window_bounds(state.held, &post.window_ms, now_ms, bounding);
            if let Some((window, claimed)) = state.over_bound(&proxy, &frame, &bounds, &mut scratch)
            {
                state.undo(&proxy, &raised);
                if is_new && state.is_empty() {
                    self.keys.remove(&key.key);
                }
                refused.push(RefusedCount {
                    key: key.key.clone(),
                    window,
                    claimed,
                    bound: bounds[window],
                });
                continue;
            }
            state.limits = state.held.map_or(key.limits, |held| held.limits);
            match &state.first_proxy {
                None => state.first_proxy = Some(Arc::clone(&proxy)),
                Some(first) if !Arc::ptr_eq(first, &proxy) => state.shared = true,
                Some(_) => {}
            }
            let to_flush = self.warmth.is_some_and(|warmth| {
                state.published || warmth.is_warm(&state.limits, &state.local)
            });
            if to_flush {
                insert_tag(&mut self.touched, &key.key);
            }
            if !state.shared && !state.published && state.below_every_limit() {
                // Only this Envoy counted it, below its limits (most keys): nothing to answer
                // and nothing to push, without summing its buckets.
                self.pushed.remove(&key.key);
                continue;
            }
            let totals = state.totals(&frame);
            let rest = state.rest(&key.key, &proxy, &frame, &totals);
            if reply::is_pushed(&state.limits, &totals, state.shared) {
                insert_tag(&mut self.pushed, &key.key);
            } else {
                self.pushed.remove(&key.key);
            }
            if state.is_empty() {
                self.keys.remove(&key.key);
                self.published.remove(&key.key);
            }
            posted.push(rest);
        }
        let hot = self.pushed_rest(post, &proxy, &frame);
        self.last_frame = Some(frame);
        if now_ms.saturating_sub(self.last_sweep_ms) >= SWEEP_INTERVAL_MS {
            self.sweep(now_ms);
        }
        let mut reply = reply::assemble(posted, hot);
        reply.refused = refused;
        reply
    }

    /// The rest of the fleet's counts of the pushed keys (`reply::is_pushed`) not in `post`;
    /// keys no longer pushed (their buckets aged out) leave the set.
    fn pushed_rest(&mut self, post: &FleetSyncPost, proxy: &Arc<str>, frame: &Frame) -> Vec<Rest> {
        let mut in_post: HashSet<&str> = HashSet::new();
        if !self.pushed.is_empty() {
            in_post.extend(post.keys.iter().map(|key| key.key.as_str()));
        }
        let mut found = Vec::new();
        let keys = &self.keys;
        self.pushed.retain(|tag| {
            let Some(state) = keys.get(tag) else {
                return false;
            };
            let totals = state.totals(frame);
            if !reply::is_pushed(&state.limits, &totals, state.shared) {
                return false;
            }
            if !in_post.contains(tag.as_str()) {
                found.push(state.rest(tag, proxy, frame, &totals));
            }
            true
        });
        found
    }

    /// Notes that a flush read fleet totals of `tag`: pushed from now on if they make it so.
    fn judge_read(&mut self, tag: &str) {
        let Some(state) = self.keys.get_mut(tag) else {
            return;
        };
        state.read_once = true;
        let Some(frame) = self.last_frame.as_ref() else {
            state.read_hot = true;
            return;
        };
        let totals = state.totals(frame);
        state.read_hot = reply::is_hot(&state.limits, &totals);
        if reply::is_pushed(&state.limits, &totals, state.shared) {
            insert_tag(&mut self.pushed, tag);
        }
    }

    /// Forgets every count older than its window plus a bucket, by the newest bucket syncs were
    /// framed at or the clock, whichever is older; then keys left with nothing.
    fn sweep(&mut self, now_ms: u64) {
        self.last_sweep_ms = now_ms;
        let cutoffs: Vec<(usize, u64, u64)> = self
            .frames
            .iter()
            .map(|(&(window, bucket_ms), &(newest, span))| {
                let clock = now_ms / bucket_ms.max(1);
                (window, bucket_ms, newest.min(clock).saturating_sub(span))
            })
            .collect();
        self.keys.retain(|_, state| {
            for &(window, bucket_ms, below) in &cutoffs {
                state.forget_all(window, bucket_ms, below);
            }
            !state.is_empty()
        });
        let keys = &self.keys;
        self.pushed.retain(|tag| keys.contains_key(tag));
        self.published.retain(|tag| keys.contains_key(tag));
        self.touched.retain(|tag| keys.contains_key(tag));
        // Held only here: no bucket counts for that proxy any more.
        self.proxy_names.retain(|name| Arc::strong_count(name) > 1);
        // A bucket width no sync used for a day is forgotten too.
        self.frames.retain(|&(_, bucket_ms), &mut (newest, span)| {
            newest
                .saturating_add(span + 1)
                .saturating_mul(bucket_ms)
                .saturating_add(86_400_000)
                > now_ms
        });
    }

    /// Every bucket held for key `tag` with the fleet's count in it (`domain::headroom`).
    pub fn buckets_of(&self, tag: &str) -> Vec<(usize, u64, u64, u64)> {
        let Some(key) = self.keys.get(tag) else {
            return Vec::new();
        };
        key.windows
            .iter()
            .enumerate()
            .flat_map(|(window, buckets)| {
                buckets.iter().map(move |(&(width, bucket), held)| {
                    (window, width, bucket, held.fleet_total())
                })
            })
            .collect()
    }

    /// Whether any bucket held here counts `proxy_id`.
    pub fn knows_proxy(&self, proxy_id: &str) -> bool {
        self.proxy_names.contains(proxy_id)
    }

    /// The one shared copy of `name`.
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(interned) = self.proxy_names.get(name) {
            return Arc::clone(interned);
        }
        let interned: Arc<str> = Arc::from(name);
        self.proxy_names.insert(Arc::clone(&interned));
        interned
    }

    /// Keys with counts held, for tests and the benchmark's sanity.
    #[cfg(test)]
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}
