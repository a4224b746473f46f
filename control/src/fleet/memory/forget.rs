//! Dropping a revoked proxy's counts: every bucket it counted in loses its count, except what
//! a replica already flushed to Redis (the fleet counted that; only the rest is dropped).

use super::Counts;

impl Counts {
    /// Forgets the counts of every instance of proxy identity `owner` (`{owner}/…`); how many
    /// buckets held one.
    pub fn forget_owner(&mut self, owner: &str) -> usize {
        let prefix = format!("{owner}/");
        let mut dropped = 0;
        for state in self.keys.values_mut() {
            for (window, buckets) in state.windows.iter_mut().enumerate() {
                for bucket in buckets.values_mut() {
                    let before = bucket.proxies.len();
                    let mut removed_total = 0u64;
                    let mut removed_flushed = 0u64;
                    bucket.proxies.retain(|held| {
                        let theirs = held.proxy.starts_with(&prefix);
                        if theirs {
                            removed_total = removed_total.saturating_add(held.count);
                            removed_flushed = removed_flushed.saturating_add(held.flushed);
                        }
                        !theirs
                    });
                    if bucket.proxies.len() < before {
                        dropped += 1;
                        bucket.total = bucket.total.saturating_sub(removed_total);
                        bucket.flushed = bucket.flushed.saturating_sub(removed_flushed);
                        // Flushed counts stay in the fleet's total as Redis holds it.
                        bucket.remote = bucket.remote.max(bucket.flushed);
                        state.local[window] = state.local[window].saturating_sub(removed_total);
                    }
                }
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::bounds::Bounding;
    use keygate_contract::fleet::{FleetSyncPost, KeyCounts};

    fn post(proxy: &str, count: u64) -> FleetSyncPost {
        FleetSyncPost {
            proxy_id: proxy.into(),
            bucket_ms: [2_000, 120_000, 3_600_000],
            window_ms: [60_000, 3_600_000, 86_400_000],
            keys: vec![KeyCounts {
                key: "0".repeat(32),
                limits: [Some(100), None, None],
                counts: [vec![(500_000, count)], vec![], vec![]],
            }],
        }
    }

    #[test]
    fn a_revoked_identity_leaves_the_counts() {
        let mut counts = Counts::default();
        let now_ms = 1_000_000_000;
        counts.sync(&post("prx_a/01", 30), now_ms, Bounding::rate_only());
        counts.sync(&post("prx_b/01", 5), now_ms, Bounding::rate_only());
        let total = |counts: &Counts| counts.buckets_of(&"0".repeat(32))[0].3;
        assert_eq!(total(&counts), 35);
        assert_eq!(counts.forget_owner("prx_a"), 1);
        assert_eq!(total(&counts), 5);
        assert_eq!(counts.forget_owner("prx_a"), 0);
    }
}
