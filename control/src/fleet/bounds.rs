//! Damage bounds on fleet counts (docs/security.md, "Implausible fleet counts"): the rule that
//! bounds usage reports, applied to `POST /v1/ratelimits/sync`. One Envoy admits at most a
//! window's limit of a key in any run of the window's buckets plus one
//! (`keygate_contract::fleet::own_count_bound`), so a sync after which the posting proxy's counts
//! of a key over their busiest such run (`busiest_run`) claim more is not counted for that key;
//! the rest of the post is.
//!
//! The limits that decide are the key's own, not the ones the post declares (a forger would
//! declare none): `LimitsIndex` holds every limited key's window limits by key tag, kept from
//! the change feed by `load::refresh` (cost per key change, none per sync), and each key's
//! counts ask it again only when it changed (`generation`). A tag the index does not hold (an
//! unlimited key, one created a moment ago, or none at all) is bounded by `--max-proxy-rate`.
//!
//! Memory: one entry per limited key, 48 bytes plus the map's slack (about 70–110 bytes a key:
//! 100k limited keys take 7–11 MB per replica).

pub mod load;

use crate::domain::plausibility::FleetRefusal;
pub use keygate_contract::fleet::tag_bytes;
use keygate_contract::fleet::{own_count_bound, RefusedCount, TAG_BYTES, WINDOWS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

/// Refusals kept for the alert sweep between two of its runs; more are counted, not kept.
const MAX_PENDING_REFUSALS: usize = 1_000;

/// A tag's bytes.
pub type TagBytes = [u8; TAG_BYTES];

/// A limited key's window limits and when they last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub limits: [Option<u64>; WINDOWS],
    /// Unix ms; 0 when never changed since the key was created.
    pub changed_at_ms: u64,
}

/// Every limited key's window limits, by key tag.
#[derive(Debug, Default)]
pub struct LimitsIndex {
    keys: HashMap<TagBytes, Held>,
    /// The feed version read up to.
    pub version: u64,
    /// Bumped by every change to an entry, so counts can keep what they looked up until then.
    generation: u64,
    /// The whole key set was read once.
    pub loaded: bool,
}

impl LimitsIndex {
    /// Sets what key `tag` holds now: its window limits (none, or a deleted key: no entry) and
    /// when they last changed as the store says. A change the index sees itself counts from
    /// `seen_at_ms` at the earliest (the store's time may be older than the index's last read).
    pub fn apply(&mut self, tag: TagBytes, now: Option<Held>, seen_at_ms: u64) {
        let held = self.keys.get(&tag).copied();
        let now = now.filter(|held| held.limits.iter().any(Option::is_some));
        let next = match (held, now) {
            (_, None) => None,
            (Some(held), Some(mut now)) if held.limits != now.limits => {
                now.changed_at_ms = now.changed_at_ms.max(seen_at_ms);
                Some(now)
            }
            (_, Some(now)) => Some(now),
        };
        if held == next {
            return;
        }
        match next {
            Some(next) => self.keys.insert(tag, next),
            None => self.keys.remove(&tag),
        };
        self.generation += 1;
    }

    pub fn get(&self, tag: &TagBytes) -> Option<Held> {
        self.keys.get(tag).copied()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// What a sync of one key is bounded by, per window (`own_count_bound`), from what the index
/// held for it (`None`: no window limit known). A `stale` index (its last read failed) may lack
/// a raised limit: every window is bounded by the rate then.
pub fn window_bounds(
    held: Option<Held>,
    window_ms: &[u64; WINDOWS],
    now_ms: u64,
    bounding: Bounding<'_>,
) -> [u64; WINDOWS] {
    std::array::from_fn(|window| {
        let limit = held.and_then(|held| held.limits[window]);
        let changed_at_ms = match held {
            _ if bounding.stale => now_ms,
            Some(held) => held.changed_at_ms,
            None => 0,
        };
        own_count_bound(
            limit,
            changed_at_ms,
            now_ms,
            window_ms[window],
            bounding.max_proxy_rate,
        )
    })
}

/// The largest sum of counts over any `run` consecutive buckets, from `(bucket, count)` pairs
/// in ascending bucket order: what one Envoy admitted in its busiest window, wherever the
/// buckets lie (a post's newest bucket says nothing: a forger picks it).
pub fn busiest_run(buckets: &[(u64, u64)], run: u64) -> u64 {
    let (mut sum, mut most, mut first) = (0u64, 0u64, 0usize);
    for (at, &(bucket, count)) in buckets.iter().enumerate() {
        sum = sum.saturating_add(count);
        while first < at && buckets[first].0.saturating_add(run) <= bucket {
            sum = sum.saturating_sub(buckets[first].1);
            first += 1;
        }
        most = most.max(sum);
    }
    most
}

/// What one sync is checked against: the index as read for it, and `--max-proxy-rate`.
#[derive(Clone, Copy)]
pub struct Bounding<'a> {
    pub index: &'a LimitsIndex,
    pub max_proxy_rate: u64,
    /// The index's last read failed.
    pub stale: bool,
}

impl Bounding<'_> {
    /// No limit known of any key: only the rate bounds (tests, and the benchmark's tags).
    #[cfg(test)]
    pub fn rate_only() -> Bounding<'static> {
        static EMPTY: std::sync::LazyLock<LimitsIndex> =
            std::sync::LazyLock::new(LimitsIndex::default);
        Bounding {
            index: &EMPTY,
            max_proxy_rate: crate::domain::plausibility::DEFAULT_MAX_PROXY_RATE,
            stale: false,
        }
    }
}

/// The index, `--max-proxy-rate` and what was refused: one per process, read by every sync.
#[derive(Debug)]
pub struct FleetBounds {
    index: RwLock<LimitsIndex>,
    pub max_proxy_rate: u64,
    /// The last read of the index failed (`Bounding::stale`).
    stale: AtomicBool,
    /// Counts refused since start (`keygate_control_fleet_implausible_counts_total`).
    refused_total: AtomicU64,
    /// Refusals the alert sweep has not taken yet.
    pending: Mutex<Vec<FleetRefusal>>,
}

impl FleetBounds {
    pub fn new(max_proxy_rate: u64) -> FleetBounds {
        FleetBounds {
            index: RwLock::new(LimitsIndex::default()),
            max_proxy_rate,
            stale: AtomicBool::new(false),
            refused_total: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
        }
    }

    pub fn index(&self) -> RwLockReadGuard<'_, LimitsIndex> {
        // Every entry is rewritten from the feed; a panic mid-update leaves at worst one entry
        // stale until its key changes again, so a poisoned lock is taken over.
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` with the index as a sync checks against it, held only for `f`.
    pub fn bounding<T>(&self, f: impl FnOnce(Bounding<'_>) -> T) -> T {
        let index = self.index();
        f(Bounding {
            index: &index,
            max_proxy_rate: self.max_proxy_rate,
            stale: self.stale.load(Ordering::Relaxed),
        })
    }

    /// Notes whether the last read of the index failed.
    pub fn set_stale(&self, stale: bool) {
        self.stale.store(stale, Ordering::Relaxed);
    }

    pub fn update<T>(&self, f: impl FnOnce(&mut LimitsIndex) -> T) -> T {
        let mut index = self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut index)
    }

    /// Notes the counts refused from `proxy_id`: counted, and kept for the alert sweep.
    pub fn refused(&self, proxy_id: &str, refused: &[RefusedCount]) {
        if refused.is_empty() {
            return;
        }
        self.refused_total
            .fetch_add(refused.len() as u64, Ordering::Relaxed);
        let mut pending = self.pending_lock();
        let room = MAX_PENDING_REFUSALS.saturating_sub(pending.len());
        pending.extend(refused.iter().take(room).map(|refused| FleetRefusal {
            proxy_id: proxy_id.to_string(),
            refused: refused.clone(),
        }));
    }

    pub fn refused_total(&self) -> u64 {
        self.refused_total.load(Ordering::Relaxed)
    }

    /// The refusals noted since the last call.
    pub fn take_refused(&self) -> Vec<FleetRefusal> {
        std::mem::take(&mut *self.pending_lock())
    }

    fn pending_lock(&self) -> std::sync::MutexGuard<'_, Vec<FleetRefusal>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: TagBytes = [7; 16];
    const MINUTE: [u64; WINDOWS] = [60_000, 3_600_000, 86_400_000];

    fn held(minute: Option<u64>, changed_at_ms: u64) -> Held {
        Held {
            limits: [minute, None, Some(1_000)],
            changed_at_ms,
        }
    }

    #[test]
    fn only_limited_keys_are_held_and_changes_bump_the_generation() {
        let mut index = LimitsIndex::default();
        index.apply(
            TAG,
            Some(Held {
                limits: [None; 3],
                changed_at_ms: 0,
            }),
            5,
        );
        assert_eq!(
            (index.len(), index.generation()),
            (0, 0),
            "no limits: nothing"
        );
        index.apply(TAG, Some(held(Some(60), 0)), 5);
        assert_eq!(
            (index.get(&TAG), index.generation()),
            (Some(held(Some(60), 0)), 1)
        );
        index.apply(TAG, Some(held(Some(60), 0)), 9);
        assert_eq!(index.generation(), 1, "the same limits change nothing");
        index.apply(TAG, Some(held(Some(10), 0)), 9);
        assert_eq!(
            index.get(&TAG).unwrap().changed_at_ms,
            9,
            "a change seen here counts from when it was seen"
        );
        index.apply(TAG, None, 10);
        assert_eq!((index.get(&TAG), index.generation()), (None, 3));
    }

    #[test]
    fn a_window_is_bounded_by_its_limit_unless_it_changed_within_two() {
        let now = 10_000_000_000;
        let rate = Bounding {
            max_proxy_rate: 1_000,
            ..Bounding::rate_only()
        };
        let settled = window_bounds(Some(held(Some(60), 0)), &MINUTE, now, rate);
        assert_eq!(settled, [60, 3_600_000, 1_000]);
        let changed = window_bounds(Some(held(Some(60), now - 90_000)), &MINUTE, now, rate);
        assert_eq!(changed, [60_000, 3_600_000, 86_400_000]);
        let later = window_bounds(Some(held(Some(60), now - 130_000)), &MINUTE, now, rate);
        assert_eq!(later[0], 60);
        let stale = Bounding {
            stale: true,
            ..rate
        };
        let unsure = window_bounds(Some(held(Some(60), 0)), &MINUTE, now, stale);
        assert_eq!(unsure[0], 60_000, "a stale index may lack a raised limit");
        let unknown = Bounding {
            max_proxy_rate: 2,
            ..rate
        };
        assert_eq!(
            window_bounds(None, &MINUTE, now, unknown),
            [120, 7_200, 172_800]
        );
    }

    #[test]
    fn the_busiest_run_is_found_wherever_it_lies() {
        let buckets = [(10, 5), (11, 5), (40, 30), (41, 30), (70, 1), (1_000, 59)];
        assert_eq!(
            busiest_run(&buckets, 31),
            65,
            "40, 41 and 70 are within 31 buckets"
        );
        assert_eq!(busiest_run(&buckets, 1), 59);
        assert_eq!(busiest_run(&buckets, 1_000_000), 130);
        assert_eq!(busiest_run(&[], 31), 0);
        assert_eq!(
            busiest_run(&[(u64::MAX, u64::MAX), (u64::MAX, 1)], 2),
            u64::MAX
        );
    }

    #[test]
    fn refusals_are_counted_all_and_kept_up_to_a_bound() {
        let bounds = FleetBounds::new(10);
        let refusal = RefusedCount {
            key: "0".repeat(32),
            window: 0,
            claimed: 61,
            bound: 60,
        };
        bounds.refused("p", &vec![refusal; MAX_PENDING_REFUSALS + 5]);
        assert_eq!(bounds.refused_total(), MAX_PENDING_REFUSALS as u64 + 5);
        assert_eq!(bounds.take_refused().len(), MAX_PENDING_REFUSALS);
        assert!(bounds.take_refused().is_empty());
    }
}
