//! Damage bounds on fleet counts (docs/security.md, "Implausible reports"): the rule that bounds
//! usage reports, applied to `POST /v1/ratelimits/sync`. One Envoy admits at most a window's
//! limit of a key in that window (`keygate_contract::fleet::own_count_bound`), so a sync whose
//! counts of a key, summed over one window, claim more is not counted for that key; the rest of
//! the post is.
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
use keygate_contract::fleet::{own_count_bound, RefusedCount, WINDOWS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

/// Refusals kept for the alert sweep between two of its runs; more are counted, not kept.
const MAX_PENDING_REFUSALS: usize = 1_000;

/// A tag's 16 bytes.
pub type TagBytes = [u8; 16];

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

/// The 16 bytes of a key tag (32 lowercase hex digits, validated by then); `None` otherwise.
pub fn tag_bytes(tag: &str) -> Option<TagBytes> {
    let digits = tag.as_bytes();
    if digits.len() != 32 {
        return None;
    }
    let nibble = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0; 16];
    for (at, byte) in bytes.iter_mut().enumerate() {
        *byte = (nibble(digits[2 * at])? << 4) | nibble(digits[2 * at + 1])?;
    }
    Some(bytes)
}

/// What a sync of one key is bounded by, per window (`own_count_bound`), from what the index
/// held for it (`None`: no window limit known).
pub fn window_bounds(
    held: Option<Held>,
    window_ms: &[u64; WINDOWS],
    now_ms: u64,
    max_proxy_rate: u64,
) -> [u64; WINDOWS] {
    std::array::from_fn(|window| {
        let limit = held.and_then(|held| held.limits[window]);
        // Changed within the last two windows: the filter's ring spans the window plus a
        // bucket, and a proxy learns of the change a snapshot poll later.
        let changed = held.is_some_and(|held| {
            held.changed_at_ms
                .saturating_add(window_ms[window].saturating_mul(2))
                > now_ms
        });
        own_count_bound(limit, changed, window_ms[window], max_proxy_rate)
    })
}

/// What one sync is checked against: the index as read for it, and `--max-proxy-rate`.
#[derive(Clone, Copy)]
pub struct Bounding<'a> {
    pub index: &'a LimitsIndex,
    pub max_proxy_rate: u64,
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
        }
    }
}

/// The index, `--max-proxy-rate` and what was refused: one per process, read by every sync.
#[derive(Debug)]
pub struct FleetBounds {
    index: RwLock<LimitsIndex>,
    pub max_proxy_rate: u64,
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
    fn tags_read_as_their_bytes() {
        let tag = "00ff10a0".repeat(4);
        let bytes = tag_bytes(&tag).unwrap();
        assert_eq!(bytes[..4], [0x00, 0xff, 0x10, 0xa0]);
        assert_eq!(tag_bytes(&"0F".repeat(16)), None, "upper case is not a tag");
        assert_eq!(tag_bytes("00"), None);
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
    fn a_window_is_bounded_by_its_limit_unless_it_changed_within_it() {
        let now = 10_000_000_000;
        let settled = window_bounds(Some(held(Some(60), 0)), &MINUTE, now, 1_000);
        assert_eq!(settled, [60, 3_600_000, 1_000]);
        let changed = window_bounds(Some(held(Some(60), now - 90_000)), &MINUTE, now, 1_000);
        assert_eq!(
            changed,
            [60_000, 3_600_000, 86_400_000],
            "changed 90 s ago: every window but the minute is still in doubt, and the minute's slack too"
        );
        let later = window_bounds(Some(held(Some(60), now - 130_000)), &MINUTE, now, 1_000);
        assert_eq!(later[0], 60);
        assert_eq!(window_bounds(None, &MINUTE, now, 2), [120, 7_200, 172_800]);
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
