//! Replicas sharing counts through (a stand-in for) Redis: what gets published, and what the
//! counts become when an Envoy moves between replicas, when Redis is unreachable and when it
//! lost its data.

use super::super::redis_fake::FakeRedis;
use super::super::Counts;
use super::{Flush, Warmth};
use crate::fleet::bounds::Bounding;
use keygate_contract::fleet::{FleetSyncPost, FleetSyncReply, KeyCounts};

const BUCKET_MS: [u64; 3] = [2_000, 120_000, 3_600_000];
const WINDOW_MS: [u64; 3] = [60_000, 3_600_000, 86_400_000];
const NOW_MS: u64 = 1_000_000_000;
const NOW: u64 = NOW_MS / 2_000;
const TWO: Warmth = Warmth::ShareOf { replicas: 2 };

fn tag(n: u32) -> String {
    format!("{n:032x}")
}

fn post(proxy: &str, n: u32, limit: u64, minute: &[(u64, u64)]) -> FleetSyncPost {
    FleetSyncPost {
        proxy_id: proxy.into(),
        bucket_ms: BUCKET_MS,
        window_ms: WINDOW_MS,
        keys: vec![KeyCounts {
            key: tag(n),
            limits: [Some(limit), None, None],
            counts: [minute.to_vec(), vec![], vec![]],
        }],
    }
}

fn minute_of(reply: &FleetSyncReply, n: u32) -> Vec<(u64, u64)> {
    reply
        .keys
        .iter()
        .find(|key| key.key == tag(n))
        .map(|key| key.counts[0].clone())
        .unwrap_or_default()
}

struct Replica {
    counts: Counts,
    seen: usize,
}

impl Replica {
    fn new() -> Replica {
        Replica {
            counts: Counts::replicated(),
            seen: 0,
        }
    }

    fn flush(&mut self, redis: &FakeRedis, warmth: Warmth) -> Flush {
        let flush = self.counts.take_flush(warmth, NOW_MS);
        let (totals, announced) = redis.exchange(&flush, &mut self.seen);
        self.counts.learn_published(&announced);
        self.counts.apply_flush(&flush, &totals);
        flush
    }
}

/// Flushes both replicas until announcements are learned and totals read.
fn settle(replicas: &mut [&mut Replica], redis: &FakeRedis) {
    for _ in 0..3 {
        for replica in replicas.iter_mut() {
            replica.flush(redis, TWO);
        }
    }
}

#[test]
fn a_key_is_published_once_a_replica_holds_its_share_of_the_limit() {
    let redis = FakeRedis::default();
    let mut a = Replica::new();
    // Limit 100 over two replicas: a replica publishes at 100 / (2 x 2) = 25.
    a.counts.sync(
        &post("e1", 1, 100, &[(NOW, 24)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    let flush = a.flush(&redis, TWO);
    assert!(
        flush.announce.is_empty() && flush.keys.is_empty(),
        "{flush:?}"
    );
    assert_eq!(a.counts.published_count(), 0);
    a.counts.sync(
        &post("e1", 1, 100, &[(NOW, 25)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    let flush = a.flush(&redis, TWO);
    assert_eq!(flush.announce.len(), 1);
    assert_eq!(flush.keys.len(), 1, "its counts are written at once");
    let flush = a.flush(&redis, TWO);
    assert!(flush.announce.is_empty(), "announced once");
    assert!(flush.keys.is_empty(), "nothing grew: only read");
    assert_eq!(flush.read, vec![tag(1)]);
}

#[test]
fn a_replica_that_holds_a_key_below_its_share_joins_when_another_publishes_it() {
    let redis = FakeRedis::default();
    let (mut a, mut b) = (Replica::new(), Replica::new());
    a.counts.sync(
        &post("e1", 1, 100, &[(NOW, 30)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    b.counts.sync(
        &post("e2", 1, 100, &[(NOW, 10)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    settle(&mut [&mut a, &mut b], &redis);
    // e2's 10 are below B's share, but A published the key, so B writes them too.
    let reply = a.counts.sync(
        &post("e1", 1, 100, &[(NOW, 30)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    assert_eq!(minute_of(&reply, 1), vec![(NOW, 10)]);
    let reply = b.counts.sync(
        &post("e2", 1, 100, &[(NOW, 10)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    assert_eq!(minute_of(&reply, 1), vec![(NOW, 30)]);
    // Below half its limit fleet-wide, Envoys that never saw it are not told; once hot, they are.
    let reply = b.counts.sync(
        &post("e3", 2, 100, &[(NOW, 1)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    assert_eq!(minute_of(&reply, 1), vec![], "40 of 100: not hot");
    a.counts.sync(
        &post("e1", 1, 100, &[(NOW, 45)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    settle(&mut [&mut a, &mut b], &redis);
    let reply = b.counts.sync(
        &post("e3", 2, 100, &[(NOW, 1)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    assert_eq!(minute_of(&reply, 1), vec![(NOW, 55)]);
}

#[test]
fn an_envoy_alternating_between_replicas_is_never_counted_short() {
    let redis = FakeRedis::default();
    let (mut a, mut b) = (Replica::new(), Replica::new());
    let mut truth = 0;
    for round in 1..=6u64 {
        truth += 20;
        let replica = if round % 2 == 1 { &mut a } else { &mut b };
        // Limit 40: published from e1's first count on. e2 (always at B) at 5.
        replica.counts.sync(
            &post("e1", 1, 40, &[(NOW, truth)]),
            NOW_MS,
            Bounding::rate_only(),
        );
        let reply = b.counts.sync(
            &post("e2", 1, 40, &[(NOW, 5)]),
            NOW_MS,
            Bounding::rate_only(),
        );
        let rest = minute_of(&reply, 1).first().map_or(0, |&(_, count)| count);
        // Before a flush: A's newest 20 may not be in Redis yet (the flush interval the bound
        // counts), and e1's count at B may be counted again on top of Redis's (an over-count,
        // by at most e1's count), never less.
        assert!(rest + 20 >= truth, "round {round}: rest {rest} of {truth}");
        assert!(rest <= 2 * truth, "round {round}: rest {rest}");
        settle(&mut [&mut a, &mut b], &redis);
        let reply = b.counts.sync(
            &post("e2", 1, 40, &[(NOW, 5)]),
            NOW_MS,
            Bounding::rate_only(),
        );
        assert_eq!(
            minute_of(&reply, 1),
            vec![(NOW, truth)],
            "round {round}: exact"
        );
    }
}

#[test]
fn without_redis_a_replica_answers_from_its_own_envoys_and_catches_up_after() {
    let redis = FakeRedis::default();
    let (mut a, mut b) = (Replica::new(), Replica::new());
    a.counts.sync(
        &post("e1", 1, 100, &[(NOW, 40)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    b.counts.sync(
        &post("e2", 1, 100, &[(NOW, 40)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    settle(&mut [&mut a, &mut b], &redis);
    // Redis goes away: flushes fail (taken, never applied). B's own Envoys still count, and
    // the totals last read still do.
    a.counts.sync(
        &post("e1", 1, 100, &[(NOW, 50)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    for _ in 0..3 {
        for replica in [&mut a, &mut b] {
            let failed = replica.counts.take_flush(TWO, NOW_MS);
            replica.counts.retake(&failed);
        }
    }
    let reply = b.counts.sync(
        &post("e3", 1, 100, &[(NOW, 3)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    assert_eq!(
        minute_of(&reply, 1),
        vec![(NOW, 80)],
        "A's 10 new ones unseen"
    );
    // Back: what grew meanwhile is written, nothing twice.
    settle(&mut [&mut a, &mut b], &redis);
    let reply = b.counts.sync(
        &post("e3", 1, 100, &[(NOW, 3)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    assert_eq!(minute_of(&reply, 1), vec![(NOW, 90)]);
}

#[test]
fn after_redis_lost_its_data_everything_is_written_again() {
    let redis = FakeRedis::default();
    let (mut a, mut b) = (Replica::new(), Replica::new());
    a.counts.sync(
        &post("e1", 1, 100, &[(NOW, 40)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    b.counts.sync(
        &post("e2", 1, 100, &[(NOW, 30)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    settle(&mut [&mut a, &mut b], &redis);
    redis.lose_everything();
    a.seen = 0;
    b.seen = 0;
    assert_eq!(a.counts.forget_flushed(), 1, "announced again");
    b.counts.forget_flushed();
    settle(&mut [&mut a, &mut b], &redis);
    let reply = b.counts.sync(
        &post("e3", 1, 100, &[(NOW, 1)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    assert_eq!(minute_of(&reply, 1), vec![(NOW, 70)]);
}

/// Proxies are told apart by their interned name: the same name in a new post (a new string
/// each time) is the same proxy, and a name is forgotten once its counts have aged out.
#[test]
fn a_proxy_is_one_proxy_across_posts_and_its_name_leaves_with_its_counts() {
    let mut counts = Counts::default();
    counts.sync(
        &post("envoy-a", 1, 100, &[(NOW, 4)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    counts.sync(
        &post("envoy-a", 1, 100, &[(NOW, 6)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    let seen_by_b = counts.sync(
        &post("envoy-b", 1, 100, &[(NOW, 1)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    assert_eq!(
        minute_of(&seen_by_b, 1),
        [(NOW, 6)],
        "envoy-a's 6, not 4 + 6"
    );
    let seen_by_a = counts.sync(
        &post("envoy-a", 1, 100, &[(NOW, 6)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    assert_eq!(minute_of(&seen_by_a, 1), [(NOW, 1)]);
    assert_eq!(counts.proxy_names.len(), 2);
    // An hour later every count has left its window; the sweep drops keys and names.
    counts.sync(
        &post("envoy-c", 2, 100, &[]),
        NOW_MS + 3_600_000,
        Bounding::rate_only(),
    );
    assert_eq!(counts.key_count(), 0);
    assert_eq!(
        counts.proxy_names.len(),
        1,
        "only envoy-c, which just synced"
    );
}

#[test]
fn a_flush_writes_only_the_buckets_raised_since_the_last_one_and_all_after_a_failure() {
    let mut replica = Replica::new();
    let written = |flush: &Flush| -> Vec<(String, u64, u64)> {
        flush
            .keys
            .iter()
            .flat_map(|key| key.raised.iter())
            .map(|raise| (raise.proxy.to_string(), raise.bucket, raise.count))
            .collect()
    };
    replica.counts.sync(
        &post("a", 1, 10, &[(NOW - 1, 2), (NOW, 1)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    replica.counts.sync(
        &post("b", 1, 10, &[(NOW, 3)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    let first = replica.counts.take_flush(TWO, NOW_MS);
    let all = vec![
        ("a".to_string(), NOW - 1, 2),
        ("a".to_string(), NOW, 1),
        ("b".to_string(), NOW, 3),
    ];
    let mut sorted = written(&first);
    sorted.sort();
    assert_eq!(sorted, all, "just published: every bucket");
    replica.counts.apply_flush(&first, &Default::default());
    // A's newest bucket grows, its older one is re-sent unchanged: only the newest is written.
    replica.counts.sync(
        &post("a", 1, 10, &[(NOW - 1, 2), (NOW, 4)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    let second = replica.counts.take_flush(TWO, NOW_MS);
    assert_eq!(written(&second), vec![("a".to_string(), NOW, 4)]);
    // That flush fails: the next writes its buckets again.
    replica.counts.retake(&second);
    let third = replica.counts.take_flush(TWO, NOW_MS);
    assert_eq!(written(&third), vec![("a".to_string(), NOW, 4)]);
    replica.counts.apply_flush(&third, &Default::default());
    let quiet = replica.counts.take_flush(TWO, NOW_MS);
    assert_eq!(written(&quiet), vec![]);
}

#[test]
fn a_key_only_another_replicas_envoy_counts_is_read_once_a_second_until_it_matters_here() {
    let redis = FakeRedis::default();
    let (mut a, mut b) = (Replica::new(), Replica::new());
    // 30 of 100 at A: warm there (published), one proxy, not hot fleet-wide.
    a.counts.sync(
        &post("e1", 1, 100, &[(NOW, 30)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    // A sync gives B a frame to judge keys by.
    b.counts.sync(
        &post("e2", 2, 1_000, &[(NOW, 1)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    settle(&mut [&mut a, &mut b], &redis);
    let reads: Vec<bool> = (0..8)
        .map(|_| b.flush(&redis, TWO).read.contains(&tag(1)))
        .collect();
    assert_eq!(reads.iter().filter(|read| **read).count(), 2, "{reads:?}");
    // Hot fleet-wide (60 of 100): read every flush from the next read on.
    a.counts.sync(
        &post("e1", 1, 100, &[(NOW, 60)]),
        NOW_MS,
        Bounding::rate_only(),
    );
    a.flush(&redis, TWO);
    for _ in 0..4 {
        b.flush(&redis, TWO);
    }
    assert!((0..4).all(|_| b.flush(&redis, TWO).read.contains(&tag(1))));
}
