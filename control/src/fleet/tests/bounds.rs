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

#[test]
fn a_bucket_far_ahead_does_not_hide_the_counts_from_the_bound() {
    each("bound-ahead", |f| {
        limit_key_1(f, 0);
        // The post's newest bucket frames it: one far ahead would leave the real ones out of
        // a window ending there. The busiest run of the proxy's buckets is what counts.
        let forged = f.sync(
            "forger",
            vec![
                key(1, None, &[(NOW, 5_000)]),
                key(2, Some(1_000), &[(NOW + 60, 1)]),
            ],
        );
        assert_eq!(forged.refused.len(), 1, "{forged:?}");
        assert_eq!(forged.refused[0].key, tag(1));
    });
}

#[test]
fn a_late_post_of_older_buckets_is_not_refused() {
    each("bound-late", |f| {
        limit_key_1(f, 0);
        f.sync("a", vec![key(1, Some(60), &[(NOW, 30)])]);
        let late = f.sync("a", vec![key(1, Some(60), &[(NOW - 25, 30)])]);
        assert!(
            late.refused.is_empty(),
            "60 in 26 buckets is the limit, not over it"
        );
    });
}

#[test]
fn a_refused_post_keeps_the_fleet_totals_read_from_redis() {
    let (store, dir) = temp_store("fleet", "bound-remote");
    let f = Fixture {
        counts: FleetCounts::for_store(&store, true),
        other: Some((
            FleetCounts::for_store(&store, true),
            FakeRedis::default(),
            RefCell::new([0, 0]),
        )),
        store,
        dir,
        bounds: FleetBounds::new(DEFAULT_MAX_PROXY_RATE),
    };
    limit_key_1(&f, 0);
    // "a" syncs with the other replica, "b" and "forgers" with this one.
    f.sync("a", vec![key(1, Some(60), &[(NOW, 35)])]);
    f.sync("a", vec![key(1, Some(60), &[(NOW, 36)])]);
    // This replica holds key 1 only as the fleet's total read from Redis; the forger's refused
    // post must not take that (nor the key's being published) away.
    let forged = f.sync("forgers", vec![key(1, None, &[(NOW, 500)])]);
    assert_eq!(forged.refused.len(), 1);
    let after = f.sync("b", vec![key(1, Some(60), &[(NOW - 1, 1)])]);
    assert_eq!(rest_of(&after, 1), 36, "a's count, from Redis");
}
