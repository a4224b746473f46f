//! Damage bounds on fleet counts (`fleet::bounds`), against every store.

use super::*;
use crate::fleet::bounds::{tag_bytes, Held};
use keygate_contract::fleet::RefusedCount;

/// Key 1 limited to 60 a minute (as the index reads it from the feed), since `changed_at_ms`.
fn limit_key_1(f: &Fixture, changed_at_ms: u64) {
    f.bounds.update(|index| {
        index.apply(
            tag_bytes(&tag(1)).unwrap(),
            Some(Held {
                limits: [Some(60), None, Some(1_000)],
                changed_at_ms,
            }),
            0,
        );
    });
}

fn rest_of(reply: &FleetSyncReply, n: u32) -> u64 {
    reply
        .keys
        .iter()
        .filter(|key| key.key == tag(n))
        .flat_map(|key| key.counts[0].iter().map(|(_, count)| count))
        .sum()
}

#[test]
fn a_count_no_envoy_can_admit_is_refused_and_the_rest_of_the_post_counted() {
    each("bound-forged", |f| {
        limit_key_1(f, 0);
        f.sync("a", vec![key(1, Some(60), &[(NOW, 40)])]);
        // The forger declares no limit: the key's own limit decides.
        let forged = f.sync(
            "forger",
            vec![
                key(1, None, &[(NOW, 5_000)]),
                key(2, Some(1_000), &[(NOW, 100)]),
            ],
        );
        assert_eq!(
            forged.refused,
            vec![RefusedCount {
                key: tag(1),
                window: 0,
                claimed: 5_000,
                bound: 60,
            }]
        );
        let b = f.sync(
            "b",
            vec![
                key(1, Some(60), &[(NOW, 1)]),
                key(2, Some(1_000), &[(NOW, 1)]),
            ],
        );
        assert_eq!(rest_of(&b, 1), 40, "the forged count is not in the fleet's");
        assert_eq!(
            rest_of(&b, 2),
            100,
            "the other key of the same post is (the index holds no limit of it)"
        );
        assert!(b.refused.is_empty());
    });
}

#[test]
fn counts_spread_over_posts_of_changed_buckets_add_up() {
    each("bound-spread", |f| {
        limit_key_1(f, 0);
        f.sync("a", vec![key(1, Some(60), &[(NOW, 10)])]);
        let first = f.sync("forger", vec![key(1, None, &[(NOW - 5, 50)])]);
        assert!(first.refused.is_empty(), "50 of 60 is plausible");
        // Only the newer bucket is posted: the older one, held, still counts towards the bound.
        let second = f.sync("forger", vec![key(1, None, &[(NOW, 50)])]);
        assert_eq!(second.refused.len(), 1);
        assert_eq!(second.refused[0].claimed, 100);
        let b = f.sync("b", vec![key(1, Some(60), &[(NOW, 1)])]);
        assert_eq!(rest_of(&b, 1), 60, "a's 10 and the forger's first 50");
    });
}

#[test]
fn a_limit_changed_within_the_window_bounds_by_the_rate_until_two_windows_passed() {
    each("bound-changed", |f| {
        // Lowered 30 s ago: counts admitted under the old limit may still be in the window.
        limit_key_1(f, NOW_MS - 30_000);
        let reply = f.sync("a", vec![key(1, Some(60), &[(NOW, 500)])]);
        assert!(reply.refused.is_empty());
    });
    each("bound-settled", |f| {
        limit_key_1(f, NOW_MS - 121_000);
        let reply = f.sync("a", vec![key(1, Some(60), &[(NOW, 500)])]);
        assert_eq!(reply.refused.len(), 1);
    });
}

#[test]
fn honest_envoys_at_the_limit_are_never_refused() {
    each("bound-honest", |f| {
        limit_key_1(f, 0);
        // Each Envoy admits at most the limit over any window; together they may exceed it by
        // the documented overshoot, which is no one Envoy's count.
        for (n, proxy) in ["a", "b", "c"].into_iter().enumerate() {
            let buckets: Vec<(u64, u64)> = (0..30).map(|b| (NOW - 29 + b, 2)).collect();
            let reply = f.sync(proxy, vec![key(1, Some(60), &buckets)]);
            assert!(reply.refused.is_empty(), "envoy {n}");
        }
    });
}
