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
//! Rings (`ring.rs`) are fixed arrays and `SlotState` is `Copy`: the request path decodes a slot, decides
//! and encodes it again without touching the heap (`slot_codec.rs` is the byte layout).

pub use crate::limits::ring::{Ring, MAX_RING};
use keygate_contract::snapshot::Limits;

/// The three windows, in this order everywhere.
pub use keygate_contract::fleet::WINDOW_NAMES;
/// Buckets per window: minute 30 × 2 s, hour 30 × 2 min, day 24 × 1 h.
pub const BUCKETS: [usize; 3] = [30, 30, 24];
/// Counters per ring: one more than the buckets, so a ring always spans the whole window.
pub const RING_LENS: [usize; 3] = [BUCKETS[0] + 1, BUCKETS[1] + 1, BUCKETS[2] + 1];
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

    /// The bucket of each window `now_ms` falls in.
    pub fn buckets_at(&self, now_ms: u64) -> [u64; 3] {
        [0, 1, 2].map(|window| now_ms / self.bucket_ms(window))
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

pub use keygate_contract::fleet::window_limits;

/// Each window's limit, 0 for a window without one (a key's credits are good only under the
/// limits they were counted under, `credits.rs`).
pub fn limit_values(limits: &Limits) -> [u64; 3] {
    window_limits(limits).map(|limit| limit.unwrap_or(0))
}

/// A grant of more than one request takes at most this share of a window's limit, and leaves
/// at least half of it (`admit`): so a plan of 60 a minute is always counted one by one.
pub const GRANT_SHARE: u64 = 64;

/// Requests counted ahead and never used (`credits.rs`), to take out of the buckets they were
/// counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiveBack {
    pub count: u64,
    /// The bucket of each window they were counted in...
    pub buckets: [u64; 3],
    /// ...and which windows counted them (those the key had a limit in).
    pub limited: [bool; 3],
}

pub fn has_limits(limits: &Limits) -> bool {
    window_limits(limits).iter().any(Option::is_some) || limits.concurrent.is_some()
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
                Ring::with_len(RING_LENS[0]),
                Ring::with_len(RING_LENS[1]),
                Ring::with_len(RING_LENS[2]),
            ],
            remote: [
                Ring::with_len(RING_LENS[0]),
                Ring::with_len(RING_LENS[1]),
                Ring::with_len(RING_LENS[2]),
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
        ring.clear();
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

    /// Takes back requests counted ahead and never used, from the buckets still in the rings.
    /// `false` when there was nothing to take (nothing to write back).
    pub fn give_back(&mut self, back: &GiveBack, windows: &Windows, now_ms: u64) -> bool {
        self.advance(windows, now_ms);
        let mut taken = false;
        for window in 0..3 {
            if back.limited[window] {
                taken |= self.rings[window].subtract(back.buckets[window], back.count);
            }
        }
        taken
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
            self.remote[window].max_ring(&other.remote[window]);
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
/// concurrency limit, adds it to the in-flight count). Returns the usage after the decision,
/// as if this one request were counted, and how many were counted.
///
/// `want` > 1 asks to count the next requests too (`credits.rs`). More than one is granted
/// only without a concurrency limit and far from every limit: a grant takes at most
/// 1/`GRANT_SHARE` of each window's limit and leaves each window at most half used.
pub fn admit(
    state: &mut SlotState,
    limits: &Limits,
    windows: &Windows,
    now_ms: u64,
    want: u64,
) -> (Result<u64, Refusal>, Usage) {
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
    let mut granted = 1;
    if refusal.is_none() {
        let count = grant(want, limits, &limits_by_window, &fleet);
        granted = u64::from(count);
        for (window, ring) in fleet.iter_mut().enumerate() {
            if let Some(ring) = ring {
                let bucket = now_ms / windows.bucket_ms(window);
                state.rings[window].add(bucket, count);
                ring.add(bucket, count);
            }
        }
        if limits.concurrent.is_some() {
            state.in_flight.add(windows.in_flight_bucket(now_ms), 1);
        }
    }
    // Credits counted ahead are not used yet: this request is told what it alone left.
    let counted_ahead = granted - 1;
    let mut usage = Usage::default();
    let mut totals = [0; 3];
    for (window, limit) in limits_by_window.iter().enumerate() {
        let (Some(limit), Some(ring)) = (*limit, fleet[window]) else {
            continue;
        };
        totals[window] = ring.total();
        usage.windows[window] = Some(WindowUsage {
            limit,
            remaining: limit.saturating_sub(totals[window] - counted_ahead),
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
    (refusal.map_or(Ok(granted), Err), usage)
}

/// How many requests to count for an admitted request that asks for `want` (see `admit`),
/// with `fleet` each limited window's counts before it. At most a ring counter's `u32`, so
/// what is counted is what is reported.
fn grant(
    want: u64,
    limits: &Limits,
    limits_by_window: &[Option<u64>; 3],
    fleet: &[Option<Ring>; 3],
) -> u32 {
    if want <= 1 || limits.concurrent.is_some() {
        return 1;
    }
    let mut granted = want;
    for (limit, ring) in limits_by_window.iter().zip(fleet) {
        if let (Some(limit), Some(ring)) = (limit, ring) {
            let far = (limit / 2).saturating_sub(ring.total());
            granted = granted.min(limit / GRANT_SHARE).min(far);
        }
    }
    u32::try_from(granted).unwrap_or(u32::MAX).max(1)
}

/// Whole seconds for `Retry-After` and reset headers: rounded up, at least 1.
pub fn ceil_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests;
