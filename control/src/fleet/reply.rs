//! What makes a key hot, and the answer's order and size, the same whichever store counted.

use keygate_contract::fleet::{FleetSyncReply, KeyCounts, MAX_KEYS_PER_SYNC, WINDOWS};
use std::cmp::Ordering;

/// A key is hot when, in some window, what the whole fleet admitted of it (every Envoy, every
/// bucket inside the window) is at least half its limit (as last reported).
///
/// Why half: a key below it cannot be pushed over its limit by the Envoys that have not heard
/// of it unless they admit the other half between two syncs, and a key's first requests at an
/// Envoy make that Envoy sync it (and learn the rest of the fleet's count) within one interval.
/// Lower thresholds push more keys (each answer grows by every key of the fleet near any use);
/// higher ones leave less room. Half keeps the answers to the keys that matter while the
/// documented overshoot bound (docs/rate-limits.md) holds.
pub fn is_hot(limits: &[Option<u64>; WINDOWS], totals: &[u64; WINDOWS]) -> bool {
    (0..WINDOWS).any(|window| match limits[window] {
        Some(limit) if limit > 0 => totals[window].saturating_mul(2) >= limit,
        _ => false,
    })
}

/// Whether a hot key is pushed to every Envoy that syncs, even ones that never saw it: when
/// more than one Envoy counted it, or when it has used up a limit.
///
/// Why not every hot key: one Envoy's keys near their limits are, in a fleet of N Envoys with
/// k such keys each, N·k keys in every answer (N² work). An Envoy that starts seeing a key only
/// one other Envoy counted learns the rest of the fleet's count in the answer to its next sync,
/// within 2s + t, so what it admits unaware is at most its own traffic in that time: the
/// `r · D` term of the overshoot bound, however the load balancer spreads the key. A key at
/// its limit is pushed anyway, so a client that used it up through one Envoy is refused by the
/// next one at once.
pub fn is_pushed(limits: &[Option<u64>; WINDOWS], totals: &[u64; WINDOWS], shared: bool) -> bool {
    is_hot(limits, totals)
        && (shared
            || (0..WINDOWS).any(|window| match limits[window] {
                Some(limit) if limit > 0 => totals[window] >= limit,
                _ => false,
            }))
}

/// How close to its limit a key is: the largest share of a limit used, for ordering hot keys.
pub fn heat(limits: &[Option<u64>; WINDOWS], totals: &[u64; WINDOWS]) -> f64 {
    (0..WINDOWS)
        .filter_map(|window| match limits[window] {
            Some(limit) if limit > 0 => Some(totals[window] as f64 / limit as f64),
            _ => None,
        })
        .fold(0.0, f64::max)
}

/// One key's part of an answer: the rest of the fleet's counts (no zero buckets).
#[derive(Debug, Clone, PartialEq)]
pub struct Rest {
    pub key: KeyCounts,
    pub heat: f64,
}

impl Rest {
    fn is_empty(&self) -> bool {
        self.key.counts.iter().all(Vec::is_empty)
    }
}

/// The answer: the posted keys first (in the post's order), then the hottest other keys, keys
/// with nothing from the rest of the fleet left out, at most `MAX_KEYS_PER_SYNC` in all.
pub fn assemble(posted: Vec<Rest>, mut hot: Vec<Rest>) -> FleetSyncReply {
    hot.sort_by(|a, b| {
        b.heat
            .partial_cmp(&a.heat)
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.key.key.cmp(&b.key.key))
    });
    FleetSyncReply {
        keys: posted
            .into_iter()
            .chain(hot)
            .filter(|rest| !rest.is_empty())
            .take(MAX_KEYS_PER_SYNC)
            .map(|rest| rest.key)
            .collect(),
        refused: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_limit_in_any_window_is_hot() {
        assert!(!is_hot(&[Some(10), None, None], &[4, 100, 100]));
        assert!(is_hot(&[Some(10), None, None], &[5, 0, 0]));
        assert!(is_hot(&[Some(11), None, None], &[6, 0, 0]));
        assert!(!is_hot(&[Some(11), None, None], &[5, 0, 0]));
        assert!(is_hot(&[Some(1000), Some(10), None], &[5, 5, 0]));
        assert!(!is_hot(&[Some(0), None, None], &[5, 5, 5]), "0 is no limit");
        assert_eq!(heat(&[Some(10), Some(100), None], &[5, 80, 9]), 0.8);
        assert!(is_pushed(&[Some(10), None, None], &[5, 0, 0], true));
        assert!(
            !is_pushed(&[Some(10), None, None], &[9, 0, 0], false),
            "one Envoy's"
        );
        assert!(
            is_pushed(&[Some(10), None, None], &[10, 0, 0], false),
            "used up"
        );
        assert!(
            !is_pushed(&[Some(10), None, None], &[4, 0, 0], true),
            "not hot"
        );
    }

    fn rest(key: char, heat: f64, count: u64) -> Rest {
        Rest {
            key: KeyCounts {
                key: key.to_string().repeat(32),
                limits: [None; WINDOWS],
                counts: [
                    if count > 0 { vec![(1, count)] } else { vec![] },
                    vec![],
                    vec![],
                ],
            },
            heat,
        }
    }

    #[test]
    fn posted_keys_first_then_the_hottest_and_never_more_than_the_cap() {
        let reply = assemble(
            vec![rest('b', 0.0, 1), rest('a', 0.0, 0), rest('c', 0.1, 2)],
            vec![rest('d', 0.6, 1), rest('e', 0.9, 1), rest('f', 0.6, 1)],
        );
        let order: Vec<char> = reply
            .keys
            .iter()
            .map(|key| key.key.chars().next().unwrap())
            .collect();
        assert_eq!(order, ['b', 'c', 'e', 'd', 'f']);
        let many: Vec<Rest> = (0..MAX_KEYS_PER_SYNC).map(|_| rest('1', 0.0, 1)).collect();
        let reply = assemble(many, vec![rest('9', 5.0, 1)]);
        assert_eq!(reply.keys.len(), MAX_KEYS_PER_SYNC);
        assert!(reply.keys.iter().all(|key| key.key.starts_with('1')));
    }
}
