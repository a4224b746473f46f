//! Per-key request limits: the window maths, pure and allocation-free.
//!
//! Each window (minute, hour, day) is a sliding window made of `B` buckets; a key's state keeps
//! `B + 1` bucket counters per window in a ring. A request is admitted when the sum of the ring
//! plus one stays within the limit. Because the ring spans between `B` and `B + 1` buckets —
//! always at least the whole window — the number admitted in *any* interval of the window's
//! length never exceeds the limit: no burst of twice the limit at a window edge, as fixed
//! windows allow, and none of the `limit + burst` that a token bucket or GCRA with a full burst
//! allows in one window. The price is that a request may be counted for up to one bucket longer
//! than the window (2 s of a minute, 2 min of an hour, 1 h of a day); `Retry-After` tells the
//! exact instant a request will pass again.
//!
//! In-flight requests (the concurrency limit) are counted per time bucket of their admission,
//! in a ring of `IN_FLIGHT_BUCKETS` buckets spanning `Windows::in_flight_expiry_ms`. A request
//! gives its place back when it ends; a place whose end is never seen (the worker VM died or
//! was reloaded mid-request, and shared data outlives it) leaves the ring with its bucket, so a
//! key is never locked out for longer than the expiry (plus one bucket).
//!
//! Fleet-wide limits: a slot also holds, per window, what the rest of the fleet admitted in each
//! bucket (`remote`, written by the fleet sync, `sync/fleet.rs`), and a request is admitted only
//! while local plus remote plus one stays within the limit. Remote counts sit in the same ring
//! positions as local ones, so they age out with their buckets: stale counts never outlive
//! their window. The slot also keeps the key's tag (the first 16 bytes of its digest) and its
//! window limits, so the sync can name the key and its limits from the slot alone.
//!
//! Rings are fixed arrays and `SlotState` is `Copy`: the request path decodes a slot, decides
//! and encodes it again without touching the heap (`slot_codec.rs` is the byte layout).

use keygate_contract::snapshot::Limits;

/// The three windows, in this order everywhere.
pub const WINDOW_NAMES: [&str; 3] = ["minute", "hour", "day"];
/// Buckets per window: minute 30 × 2 s, hour 30 × 2 min, day 24 × 1 h.
pub const BUCKETS: [usize; 3] = [30, 30, 24];
/// Counters per ring: one more than the buckets, so a ring always spans the whole window.
pub const RING_LENS: [usize; 3] = [BUCKETS[0] + 1, BUCKETS[1] + 1, BUCKETS[2] + 1];
/// The longest ring; every ring is an array of this many counters, the tail unused.
pub const MAX_RING: usize = 31;
/// Buckets of the in-flight ring: a place is held between 7/7 and 8/7 of the expiry.
pub const IN_FLIGHT_BUCKETS: usize = 8;

/// Window lengths in milliseconds (configurable so tests can use short windows on the real
/// code path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub lengths_ms: [u64; 3],
    /// How long an in-flight place is held at most when the request's end is never seen.
    pub in_flight_expiry_ms: u64,
}

impl Default for Windows {
    fn default() -> Windows {
        Windows {
            lengths_ms: [60_000, 3_600_000, 86_400_000],
            in_flight_expiry_ms: 600_000,
        }
    }
}

impl Windows {
    /// Rounded up: `BUCKETS` buckets must cover at least the whole window, or a window that is
    /// not a multiple of them (`10s` → 333 ms buckets) would forget requests early.
    fn bucket_ms(&self, window: usize) -> u64 {
        self.lengths_ms[window]
            .div_ceil(BUCKETS[window] as u64)
            .max(1)
    }

    /// Width of one bucket of `window` (0 minute, 1 hour, 2 day), in milliseconds.
    pub fn bucket_width_ms(&self, window: usize) -> u64 {
        self.bucket_ms(window)
    }

    /// Width of an in-flight bucket: `IN_FLIGHT_BUCKETS - 1` of them cover the expiry.
    fn in_flight_bucket_ms(&self) -> u64 {
        self.in_flight_expiry_ms
            .div_ceil(IN_FLIGHT_BUCKETS as u64 - 1)
            .max(1)
    }

    /// The in-flight bucket a request admitted at `now_ms` is counted in.
    pub fn in_flight_bucket(&self, now_ms: u64) -> u64 {
        now_ms / self.in_flight_bucket_ms()
    }

    /// How long a count may stay in a slot: the longest ring span, or the in-flight one.
    pub fn longest_memory_ms(&self) -> u64 {
        let rings = (0..3)
            .map(|w| self.bucket_ms(w).saturating_mul(RING_LENS[w] as u64))
            .max()
            .unwrap_or(0);
        rings.max(
            self.in_flight_bucket_ms()
                .saturating_mul(IN_FLIGHT_BUCKETS as u64),
        )
    }
}

/// The limits of one key as an array in window order, plus concurrency.
pub fn window_limits(limits: &Limits) -> [Option<u64>; 3] {
    [limits.per_minute, limits.per_hour, limits.per_day]
}

pub fn has_limits(limits: &Limits) -> bool {
    window_limits(limits).iter().any(Option::is_some) || limits.concurrent.is_some()
}

/// A ring of bucket counters: `len` of them are used (a window's `RING_LENS`, or
/// `IN_FLIGHT_BUCKETS`).
#[derive(Debug, Clone, Copy, Eq)]
pub struct Ring {
    /// Absolute index (`now / bucket_ms`) of the newest bucket written.
    pub newest: u64,
    len: usize,
    counts: [u32; MAX_RING],
}

/// An empty ring's newest bucket says nothing (it is not stored), so it is not compared.
impl PartialEq for Ring {
    fn eq(&self, other: &Ring) -> bool {
        self.len == other.len
            && self.counts == other.counts
            && (self.newest == other.newest || self.is_empty())
    }
}

impl Ring {
    pub fn with_len(len: usize) -> Ring {
        Ring {
            newest: 0,
            len: len.clamp(1, MAX_RING),
            counts: [0; MAX_RING],
        }
    }

    fn for_window(window: usize) -> Ring {
        Ring::with_len(RING_LENS[window])
    }

    /// Counters in use, by ring position (`bucket % len`).
    pub fn counts(&self) -> &[u32] {
        &self.counts[..self.len]
    }

    /// Sets the counter at ring position `index` (ignored past the ring).
    pub fn set_count(&mut self, index: usize, count: u32) {
        if index < self.len {
            self.counts[index] = count;
        }
    }

    fn index(&self, bucket: u64) -> usize {
        (bucket % self.len as u64) as usize
    }

    /// Moves the ring forward to `bucket`, zeroing buckets that fell out. Runs for every ring
    /// of a slot on every request, so it walks the ring without a division per step.
    fn advance(&mut self, bucket: u64) {
        if bucket <= self.newest {
            return;
        }
        let steps = bucket - self.newest;
        if steps >= self.len as u64 {
            self.counts = [0; MAX_RING];
        } else {
            let mut index = self.index(self.newest);
            for _ in 0..steps {
                index = if index + 1 == self.len { 0 } else { index + 1 };
                self.counts[index] = 0;
            }
        }
        self.newest = bucket;
    }

    fn total(&self) -> u64 {
        self.counts().iter().map(|&c| u64::from(c)).sum()
    }

    pub fn is_empty(&self) -> bool {
        // Unused tail counters are always 0: one branch-free pass over the array.
        self.counts.iter().fold(0, |any, &c| any | c) == 0
    }

    fn add(&mut self, bucket: u64, count: u32) {
        let index = self.index(bucket);
        self.counts[index] = self.counts[index].saturating_add(count);
    }

    /// The non-zero buckets as `(absolute bucket, count)`, oldest first.
    fn buckets(&self) -> Vec<(u64, u64)> {
        let len = self.len as u64;
        (0..len.min(self.newest.saturating_add(1)))
            .rev()
            .map(|age| self.newest - age)
            .filter_map(|bucket| {
                let count = self.counts[self.index(bucket)];
                (count > 0).then_some((bucket, u64::from(count)))
            })
            .collect()
    }

    /// Whether `bucket` is one the ring holds now.
    fn holds(&self, bucket: u64) -> bool {
        bucket <= self.newest && self.newest - bucket < self.len as u64
    }

    /// Adds `other`'s counts bucket by bucket (both advanced to the same bucket).
    fn add_ring(&mut self, other: &Ring) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// Milliseconds from `now_ms` until the total drops to `target` or below, as the oldest
    /// buckets leave the ring. `None` if it already is.
    fn wait_until_total_at_most(&self, target: u64, bucket_ms: u64, now_ms: u64) -> Option<u64> {
        let mut total = self.total();
        if total <= target {
            return None;
        }
        let len = self.len as u64;
        // Oldest bucket in the ring is newest - (len - 1); it leaves when the current bucket
        // index reaches newest + 1, the next one at newest + 2, and so on.
        // Bucket `newest + k + 1 - len` sits at the ring index after the newest one's.
        let mut index = self.index(self.newest);
        for k in 0..len {
            index = if index + 1 == self.len { 0 } else { index + 1 };
            total -= u64::from(self.counts[index]);
            if total <= target {
                // Saturating: a slot read back from shared data may hold any `newest`.
                let frees_at_ms = self.newest.saturating_add(k + 1).saturating_mul(bucket_ms);
                return Some(frees_at_ms.saturating_sub(now_ms).max(1));
            }
        }
        Some(bucket_ms)
    }

    /// Gives back one count taken in `bucket`; `false` if it already left the ring (or was
    /// never there).
    fn remove(&mut self, bucket: u64) -> bool {
        if !self.holds(bucket) {
            return false;
        }
        let index = self.index(bucket);
        if self.counts[index] == 0 {
            return false;
        }
        self.counts[index] -= 1;
        true
    }
}

/// A key's counters, as stored in one shared-data slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    /// First 8 bytes of the key's hash (never 0 for a key).
    pub owner: u64,
    /// The next 8 bytes: with `owner`, the key's fleet-wide tag.
    pub seed: u64,
    /// The key's window limits when it was last counted here (0: none).
    pub limits: [u64; 3],
    /// In-flight requests by the bucket they were admitted in.
    pub in_flight: Ring,
    /// This Envoy's admitted requests per window.
    pub rings: [Ring; 3],
    /// What the rest of the fleet admitted, per bucket, as of the last fleet sync.
    pub remote: [Ring; 3],
}

impl SlotState {
    pub fn empty(owner: u64) -> SlotState {
        SlotState::for_key(owner, 0)
    }

    pub fn for_key(owner: u64, seed: u64) -> SlotState {
        SlotState {
            owner,
            seed,
            limits: [0; 3],
            in_flight: Ring::with_len(IN_FLIGHT_BUCKETS),
            rings: [
                Ring::for_window(0),
                Ring::for_window(1),
                Ring::for_window(2),
            ],
            remote: [
                Ring::for_window(0),
                Ring::for_window(1),
                Ring::for_window(2),
            ],
        }
    }

    /// Local counts per window as `(bucket, count)` at `now_ms`, for the fleet sync.
    pub fn local_buckets(&self, windows: &Windows, now_ms: u64) -> [Vec<(u64, u64)>; 3] {
        let mut advanced = *self;
        advanced.advance(windows, now_ms);
        advanced.rings.map(|ring| ring.buckets())
    }

    /// Replaces the rest of the fleet's counts of `window` with `buckets` (`(bucket, count)`);
    /// buckets the ring no longer (or does not yet) hold are dropped. A bucket one ahead of
    /// ours (a peer's clock slightly ahead) counts as our newest.
    pub fn set_remote(
        &mut self,
        window: usize,
        buckets: &[(u64, u64)],
        windows: &Windows,
        now_ms: u64,
    ) {
        self.advance(windows, now_ms);
        let Some(ring) = self.remote.get_mut(window) else {
            return;
        };
        ring.counts = [0; MAX_RING];
        for &(bucket, count) in buckets {
            let bucket = if bucket == ring.newest.wrapping_add(1) {
                ring.newest
            } else {
                bucket
            };
            if ring.holds(bucket) {
                ring.add(bucket, u32::try_from(count).unwrap_or(u32::MAX));
            }
        }
    }

    /// The rest of the fleet's admitted requests in each window at `now_ms`.
    pub fn remote_totals(&self, windows: &Windows, now_ms: u64) -> [u64; 3] {
        let mut advanced = *self;
        advanced.advance(windows, now_ms);
        advanced.remote.map(|ring| ring.total())
    }

    /// Whether nothing of this slot's owner is still counted at `now_ms` (free to reuse).
    pub fn idle(&self, windows: &Windows, now_ms: u64) -> bool {
        let mut advanced = *self;
        advanced.advance(windows, now_ms);
        advanced.in_flight.is_empty()
            && advanced
                .rings
                .iter()
                .chain(&advanced.remote)
                .all(Ring::is_empty)
    }

    /// Requests of this key in flight at `now_ms` (places not yet expired).
    pub fn in_flight(&self, windows: &Windows, now_ms: u64) -> u64 {
        let mut ring = self.in_flight;
        ring.advance(windows.in_flight_bucket(now_ms));
        ring.total()
    }

    /// Gives back a place taken in in-flight bucket `bucket` (see `Windows::in_flight_bucket`);
    /// `false` if it had already expired.
    pub fn release(&mut self, windows: &Windows, bucket: u64, now_ms: u64) -> bool {
        self.in_flight.advance(windows.in_flight_bucket(now_ms));
        self.in_flight.remove(bucket)
    }

    /// Adds the counts of `other` (the same key's counts from another slot, when the table
    /// grew) to this slot's, both as of `now_ms`. Remote counts are a snapshot of the rest of
    /// the fleet, not a sum, so the larger of each bucket is kept.
    pub fn merge(&mut self, other: &SlotState, windows: &Windows, now_ms: u64) {
        let mut other = *other;
        other.advance(windows, now_ms);
        self.advance(windows, now_ms);
        self.in_flight.add_ring(&other.in_flight);
        for window in 0..3 {
            self.rings[window].add_ring(&other.rings[window]);
            let remote = &mut self.remote[window];
            for (mine, theirs) in remote.counts.iter_mut().zip(&other.remote[window].counts) {
                *mine = (*mine).max(*theirs);
            }
            if self.limits[window] == 0 {
                self.limits[window] = other.limits[window];
            }
        }
    }

    fn advance(&mut self, windows: &Windows, now_ms: u64) {
        self.in_flight.advance(windows.in_flight_bucket(now_ms));
        for window in 0..3 {
            let bucket = now_ms / windows.bucket_ms(window);
            self.rings[window].advance(bucket);
            self.remote[window].advance(bucket);
        }
    }

    /// Local and remote counts of `window` together.
    fn fleet_ring(&self, window: usize) -> Ring {
        let mut ring = self.rings[window];
        ring.add_ring(&self.remote[window]);
        ring
    }
}

/// Why a request over its limits was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A window is full; retry after this many milliseconds. `by_fleet`: this Envoy's own
    /// count alone would have admitted it (the rest of the fleet's filled the window).
    Rate { retry_after_ms: u64, by_fleet: bool },
    /// Too many requests in flight.
    Concurrency,
}

/// One limited window's numbers after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUsage {
    pub limit: u64,
    pub remaining: u64,
    /// Milliseconds until `remaining` grows (0 when nothing is used). Computed for the tightest
    /// window only (`Usage::tightest`, the one the headers report); 0 for the others.
    pub reset_ms: u64,
}

/// What the rate-limit headers report, per window (`None`: the window has no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub windows: [Option<WindowUsage>; 3],
}

impl Usage {
    /// The window with the fewest requests left (the first of equals).
    pub fn tightest(&self) -> Option<(usize, WindowUsage)> {
        self.windows
            .iter()
            .enumerate()
            .filter_map(|(window, usage)| usage.map(|usage| (window, usage)))
            .min_by_key(|(window, usage)| (usage.remaining, *window))
    }
}

/// Checks a request against `limits` at `now_ms` and, if admitted, counts it (and, with a
/// concurrency limit, adds it to the in-flight count). Returns the usage after the decision.
pub fn admit(
    state: &mut SlotState,
    limits: &Limits,
    windows: &Windows,
    now_ms: u64,
) -> (Result<(), Refusal>, Usage) {
    state.advance(windows, now_ms);
    let limits_by_window = window_limits(limits);
    for (window, limit) in limits_by_window.iter().enumerate() {
        state.limits[window] = limit.unwrap_or(0);
    }
    // Local plus remote counts of each limited window, built once and kept in step below.
    let mut fleet: [Option<Ring>; 3] = [None; 3];
    for (window, limit) in limits_by_window.iter().enumerate() {
        if limit.is_some() {
            fleet[window] = Some(state.fleet_ring(window));
        }
    }
    let mut refusal = None;
    for (window, limit) in limits_by_window.iter().enumerate() {
        let (Some(limit), Some(ring)) = (*limit, fleet[window]) else {
            continue;
        };
        if ring.total() + 1 > limit {
            let wait = ring
                .wait_until_total_at_most(
                    limit.saturating_sub(1),
                    windows.bucket_ms(window),
                    now_ms,
                )
                .unwrap_or(1);
            let by_fleet = state.rings[window].total() < limit;
            refusal = Some(match refusal {
                Some(Refusal::Rate {
                    retry_after_ms,
                    by_fleet: earlier,
                }) => Refusal::Rate {
                    retry_after_ms: retry_after_ms.max(wait),
                    by_fleet: earlier && by_fleet,
                },
                _ => Refusal::Rate {
                    retry_after_ms: wait,
                    by_fleet,
                },
            });
        }
    }
    if refusal.is_none() {
        if let Some(max) = limits.concurrent {
            if state.in_flight.total() >= max {
                refusal = Some(Refusal::Concurrency);
            }
        }
    }
    if refusal.is_none() {
        for (window, ring) in fleet.iter_mut().enumerate() {
            if let Some(ring) = ring {
                let bucket = now_ms / windows.bucket_ms(window);
                state.rings[window].add(bucket, 1);
                ring.add(bucket, 1);
            }
        }
        if limits.concurrent.is_some() {
            state.in_flight.add(windows.in_flight_bucket(now_ms), 1);
        }
    }
    let mut usage = Usage::default();
    let mut totals = [0; 3];
    for (window, limit) in limits_by_window.iter().enumerate() {
        let (Some(limit), Some(ring)) = (*limit, fleet[window]) else {
            continue;
        };
        totals[window] = ring.total();
        usage.windows[window] = Some(WindowUsage {
            limit,
            remaining: limit.saturating_sub(totals[window]),
            reset_ms: 0,
        });
    }
    // Only the tightest window's reset is ever reported; the others are not worth their walk.
    if let Some((window, _)) = usage.tightest() {
        if let (Some(ring), Some(tightest)) = (fleet[window], usage.windows[window].as_mut()) {
            tightest.reset_ms = ring
                .wait_until_total_at_most(
                    totals[window].saturating_sub(1),
                    windows.bucket_ms(window),
                    now_ms,
                )
                .unwrap_or(0);
        }
    }
    (refusal.map_or(Ok(()), Err), usage)
}

/// Whole seconds for `Retry-After` and reset headers: rounded up, at least 1.
pub fn ceil_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::slot_codec::{decode, encode};

    fn limits(per_minute: Option<u64>, per_day: Option<u64>, concurrent: Option<u64>) -> Limits {
        Limits {
            per_minute,
            per_hour: None,
            per_day,
            concurrent,
        }
    }

    fn count_admitted(
        state: &mut SlotState,
        limits: &Limits,
        windows: &Windows,
        times_ms: impl Iterator<Item = u64>,
    ) -> usize {
        times_ms
            .filter(|&t| admit(state, limits, windows, t).0.is_ok())
            .count()
    }

    #[test]
    fn admits_exactly_the_limit_in_a_burst() {
        let windows = Windows::default();
        let mut state = SlotState::empty(1);
        let five = limits(Some(5), None, None);
        assert_eq!(
            count_admitted(
                &mut state,
                &five,
                &windows,
                std::iter::repeat_n(1_000_000, 20)
            ),
            5
        );
    }

    #[test]
    fn no_window_of_the_limits_length_ever_admits_more_than_the_limit() {
        // Requests every 500 ms for ten minutes against 10/minute: check every sliding
        // 60 s interval of admitted requests.
        let windows = Windows::default();
        let mut state = SlotState::empty(1);
        let ten = limits(Some(10), None, None);
        let start = 7_777_777;
        let admitted: Vec<u64> = (0..1200)
            .map(|i| start + i * 500)
            .filter(|&t| admit(&mut state, &ten, &windows, t).0.is_ok())
            .collect();
        for (i, &t) in admitted.iter().enumerate() {
            let in_window = admitted[i..]
                .iter()
                .take_while(|&&u| u < t + 60_000)
                .count();
            assert!(
                in_window <= 10,
                "{in_window} admitted in the minute from {t}"
            );
        }
        // And it does not starve: roughly the limit per minute over ten minutes.
        assert!(admitted.len() >= 90, "{}", admitted.len());
    }

    #[test]
    fn retry_after_is_exact() {
        let windows = Windows::default();
        let mut state = SlotState::empty(1);
        let three = limits(Some(3), None, None);
        let now = 100_000; // bucket boundary (2 s buckets)
        for offset in [0, 1_000, 2_500] {
            assert!(admit(&mut state, &three, &windows, now + offset).0.is_ok());
        }
        let (refused, usage) = admit(&mut state, &three, &windows, now + 3_000);
        let Err(Refusal::Rate { retry_after_ms, .. }) = refused else {
            panic!("{refused:?}")
        };
        // The two oldest requests' bucket (index 50, [100 s, 102 s)) leaves the 31-bucket ring
        // when the bucket index reaches 81 → at 162 s.
        assert_eq!(now + 3_000 + retry_after_ms, 162_000);
        assert_eq!(
            usage.windows,
            [
                Some(WindowUsage {
                    limit: 3,
                    remaining: 0,
                    reset_ms: retry_after_ms
                }),
                None,
                None
            ]
        );
        assert!(admit(&mut state, &three, &windows, 162_000 - 1).0.is_err());
        assert!(admit(&mut state, &three, &windows, 162_000).0.is_ok());
    }

    #[test]
    fn tightest_of_several_windows_wins_and_retry_is_the_longest_wait() {
        let windows = Windows::default();
        let mut state = SlotState::empty(1);
        let both = limits(Some(100), Some(2), None);
        assert!(admit(&mut state, &both, &windows, 0).0.is_ok());
        let (ok, usage) = admit(&mut state, &both, &windows, 1_000);
        assert!(ok.is_ok());
        let headers = crate::limits::headers::headers(&usage, &windows);
        assert!(headers.contains(&("x-ratelimit-limit", "2".into())));
        assert!(headers.contains(&("x-ratelimit-remaining", "0".into())));
        assert!(headers.contains(&(
            "ratelimit-policy",
            "\"minute\";q=100;w=60, \"day\";q=2;w=86400".into()
        )));
        let (refused, _) = admit(&mut state, &both, &windows, 2_000);
        let Err(Refusal::Rate { retry_after_ms, .. }) = refused else {
            panic!()
        };
        assert!(retry_after_ms > 23 * 3_600_000, "{retry_after_ms}");
    }

    #[test]
    fn remote_counts_add_to_local_ones_and_age_out_with_their_buckets() {
        let windows = Windows::default();
        let mut state = SlotState::for_key(1, 2);
        let ten = limits(Some(10), None, None);
        let now = 100_000;
        state.set_remote(0, &[(now / 2_000, 7), (now / 2_000 - 3, 1)], &windows, now);
        assert_eq!(state.remote_totals(&windows, now), [8, 0, 0]);
        assert_eq!(
            count_admitted(&mut state, &ten, &windows, std::iter::repeat_n(now, 5)),
            2
        );
        let (refused, _) = admit(&mut state, &ten, &windows, now);
        assert!(matches!(refused, Err(Refusal::Rate { by_fleet: true, .. })));
        // A sync replaces the remote picture: the fleet's count moved to 3.
        state.set_remote(0, &[(now / 2_000, 3)], &windows, now);
        assert_eq!(
            count_admitted(&mut state, &ten, &windows, std::iter::repeat_n(now, 9)),
            5
        );
        // A minute and a bucket later everything has aged out, remote included.
        let later = now + 62_000;
        assert_eq!(state.remote_totals(&windows, later), [0, 0, 0]);
        assert!(state.idle(&windows, later));
        // Buckets the ring does not hold are dropped, one ahead counts as now.
        state.set_remote(
            0,
            &[(0, 50), (later / 2_000 + 1, 2), (later / 2_000 + 9, 50)],
            &windows,
            later,
        );
        assert_eq!(state.remote_totals(&windows, later), [2, 0, 0]);
        assert!(!state.idle(&windows, later), "remote counts keep the slot");
    }

    #[test]
    fn a_slot_round_trips_with_its_tag_limits_and_remote_counts() {
        let windows = Windows::default();
        let mut state = SlotState::for_key(11, 22);
        assert!(
            admit(&mut state, &limits(Some(5), Some(9), None), &windows, 4_000)
                .0
                .is_ok()
        );
        state.set_remote(1, &[(4_000 / 120_000, 3)], &windows, 4_000);
        let decoded = decode(encode(&state).as_bytes()).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(decoded.limits, [5, 0, 9]);
        assert_eq!(
            decoded.local_buckets(&windows, 4_000),
            [vec![(2, 1)], vec![], vec![(0, 1)]]
        );
        assert!(decode(&encode(&state).as_bytes()[1..]).is_none());
    }

    #[test]
    fn concurrency_counts_in_flight() {
        let windows = Windows::default();
        let mut state = SlotState::empty(1);
        let two = limits(None, None, Some(2));
        assert!(admit(&mut state, &two, &windows, 0).0.is_ok());
        assert!(admit(&mut state, &two, &windows, 0).0.is_ok());
        assert_eq!(
            admit(&mut state, &two, &windows, 0).0,
            Err(Refusal::Concurrency)
        );
        assert!(state.release(&windows, windows.in_flight_bucket(0), 0));
        assert!(admit(&mut state, &two, &windows, 0).0.is_ok());
        assert!(!state.idle(&windows, 0));
    }

    #[test]
    fn in_flight_places_whose_end_is_never_seen_expire() {
        let windows = Windows {
            in_flight_expiry_ms: 70_000,
            ..Windows::default()
        };
        let one = limits(None, None, Some(1));
        let mut state = SlotState::empty(1);
        let taken_at = 1_000_000;
        assert!(admit(&mut state, &one, &windows, taken_at).0.is_ok());
        // The request's end is lost: the key is refused until the place expires ...
        for later in [taken_at, taken_at + 30_000, taken_at + 69_999] {
            assert_eq!(
                admit(&mut state, &one, &windows, later).0,
                Err(Refusal::Concurrency),
                "{later}"
            );
            assert_eq!(state.in_flight(&windows, later), 1);
        }
        // ... and no longer than the expiry plus one bucket (10 s here).
        assert!(admit(&mut state, &one, &windows, taken_at + 80_000)
            .0
            .is_ok());
        // A late release of the expired place does not free the new one.
        let expired_bucket = windows.in_flight_bucket(taken_at);
        assert!(!state.release(&windows, expired_bucket, taken_at + 80_001));
        assert_eq!(state.in_flight(&windows, taken_at + 80_001), 1);
        assert!(state.release(
            &windows,
            windows.in_flight_bucket(taken_at + 80_000),
            taken_at + 80_001
        ));
        assert!(state.idle(&windows, taken_at + 80_001));
    }

    #[test]
    fn state_round_trips_and_rejects_garbage() {
        let windows = Windows::default();
        let mut state = SlotState::empty(0xABCDEF);
        assert!(admit(
            &mut state,
            &limits(Some(5), Some(9), Some(3)),
            &windows,
            123_456_789
        )
        .0
        .is_ok());
        let encoded = encode(&state);
        let bytes = encoded.as_bytes();
        assert_eq!(decode(bytes), Some(state));
        assert_eq!(decode(&bytes[1..]), None);
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&[0xFF; 64]), None);
    }

    #[test]
    fn idle_after_every_window_has_passed() {
        let windows = Windows::default();
        let mut state = SlotState::empty(1);
        assert!(
            admit(&mut state, &limits(Some(5), None, None), &windows, 10_000)
                .0
                .is_ok()
        );
        assert!(!state.idle(&windows, 20_000));
        assert!(state.idle(&windows, 10_000 + 62_001));
    }

    #[test]
    fn windows_not_a_multiple_of_the_buckets_still_hold_the_limit() {
        // Found by fuzz/fuzz_targets/ratelimit.rs: with 10 s / 30 = 333 ms buckets a request
        // was forgotten after 9991 ms, so two got through within 10 s against a limit of 1.
        for length in [10_000, 1_255, 59_999] {
            let windows = Windows {
                lengths_ms: [length, 3_600_000, 86_400_000],
                ..Windows::default()
            };
            let one = limits(Some(1), None, None);
            for first in 1_000_000..1_000_000 + 2 * length / 30 + 2 {
                let mut state = SlotState::empty(1);
                assert!(admit(&mut state, &one, &windows, first).0.is_ok());
                assert!(
                    admit(&mut state, &one, &windows, first + length - 1)
                        .0
                        .is_err(),
                    "window {length} ms: admitted again {} ms after {first}",
                    length - 1
                );
            }
        }
    }

    #[test]
    fn a_slot_with_any_newest_bucket_does_not_overflow() {
        // Found by fuzz/fuzz_targets/ratelimit.rs: `(newest + k + 1) * bucket_ms` overflowed for
        // a slot decoded from arbitrary bytes.
        let windows = Windows::default();
        let mut state = SlotState::empty(1);
        state.rings[0].newest = u64::MAX - 3;
        state.rings[0].set_count(0, 7);
        let mut state = decode(encode(&state).as_bytes()).unwrap();
        let (refused, usage) = admit(&mut state, &limits(Some(1), None, None), &windows, 0);
        assert!(matches!(refused, Err(Refusal::Rate { .. })), "{refused:?}");
        assert_eq!(usage.windows[0].map(|w| w.remaining), Some(0));
    }

    #[test]
    fn short_test_windows_use_the_same_maths() {
        let windows = Windows {
            lengths_ms: [3_000, 3_600_000, 86_400_000],
            ..Windows::default()
        };
        let mut state = SlotState::empty(1);
        let two = limits(Some(2), None, None);
        assert_eq!(
            count_admitted(&mut state, &two, &windows, std::iter::repeat_n(50_000, 5)),
            2
        );
        let (refused, _) = admit(&mut state, &two, &windows, 50_000);
        let Err(Refusal::Rate { retry_after_ms, .. }) = refused else {
            panic!()
        };
        assert!(retry_after_ms <= 3_100, "{retry_after_ms}");
        assert!(admit(&mut state, &two, &windows, 50_000 + retry_after_ms)
            .0
            .is_ok());
    }
}
