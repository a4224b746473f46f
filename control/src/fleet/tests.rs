//! The sync's semantics, run on both places the counts can live: in memory and in the
//! database (the same statements PostgreSQL runs, here on SQLite).

use super::bounds::FleetBounds;
use super::memory::redis_fake::FakeRedis;
use super::memory::Warmth;
use super::FleetCounts;
use crate::domain::plausibility::DEFAULT_MAX_PROXY_RATE;
use crate::store::db::temp_store;
use crate::store::Store;
use keygate_contract::fleet::{FleetSyncPost, FleetSyncReply, KeyCounts, MAX_KEYS_PER_SYNC};
use std::cell::RefCell;
use std::path::PathBuf;

/// 2 s minute buckets, 2 min hour buckets, 1 h day buckets: the filter's defaults.
const BUCKET_MS: [u64; 3] = [2_000, 120_000, 3_600_000];
const WINDOW_MS: [u64; 3] = [60_000, 3_600_000, 86_400_000];
/// A time whose minute bucket is 500,000.
const NOW_MS: u64 = 1_000_000_000;
const NOW: u64 = NOW_MS / 2_000;

struct Fixture {
    counts: FleetCounts,
    /// Replicated: a second replica and the Redis they share (each proxy syncs with the replica
    /// its name picks, as an Envoy with a sticky connection does).
    other: Option<(FleetCounts, FakeRedis, RefCell<[usize; 2]>)>,
    store: Store,
    dir: PathBuf,
    /// Key limits that bound what a sync counts (none by default: the rate only).
    bounds: FleetBounds,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The same test against the in-memory counts, the database counts, and two replicas sharing
/// their counts through (a stand-in for) Redis.
fn each(name: &str, test: impl Fn(&Fixture)) {
    for place in ["memory", "database", "replicated"] {
        let (store, dir) = temp_store("fleet", &format!("{name}-{place}"));
        let (counts, other) = match place {
            "database" => (
                FleetCounts::Database(super::database::Database::default()),
                None,
            ),
            "replicated" => (
                FleetCounts::for_store(&store, true),
                Some((
                    FleetCounts::for_store(&store, true),
                    FakeRedis::default(),
                    RefCell::new([0, 0]),
                )),
            ),
            _ => (FleetCounts::for_store(&store, false), None),
        };
        test(&Fixture {
            counts,
            other,
            store,
            dir,
            bounds: FleetBounds::new(DEFAULT_MAX_PROXY_RATE),
        });
    }
}

fn tag(n: u32) -> String {
    format!("{n:032x}")
}

fn key(n: u32, limit: Option<u64>, minute: &[(u64, u64)]) -> KeyCounts {
    KeyCounts {
        key: tag(n),
        limits: [limit, None, None],
        counts: [minute.to_vec(), vec![], vec![]],
    }
}

impl Fixture {
    fn sync_at(&self, proxy: &str, keys: Vec<KeyCounts>, now_ms: u64) -> FleetSyncReply {
        let post = FleetSyncPost {
            proxy_id: proxy.into(),
            bucket_ms: BUCKET_MS,
            window_ms: WINDOW_MS,
            keys,
        };
        assert!(keygate_contract::fleet::validate_post(&post).is_ok());
        self.post(&post, now_ms)
    }

    fn sync(&self, proxy: &str, keys: Vec<KeyCounts>) -> FleetSyncReply {
        self.sync_at(proxy, keys, NOW_MS)
    }

    /// Posts to the proxy's replica, after both replicas flushed three times: an announcement
    /// made in one flush is learned by the other replica in its next, which reads the key's
    /// totals in the one after.
    fn post(&self, post: &FleetSyncPost, now_ms: u64) -> FleetSyncReply {
        let replica = match &self.other {
            None => &self.counts,
            Some((other, redis, seen)) => {
                for _ in 0..3 {
                    for (index, replica) in [&self.counts, other].into_iter().enumerate() {
                        flush(replica, redis, &mut seen.borrow_mut()[index], now_ms);
                    }
                }
                if post.proxy_id.bytes().map(u32::from).sum::<u32>() % 2 == 0 {
                    &self.counts
                } else {
                    other
                }
            }
        };
        replica
            .sync(&self.store, post, now_ms, &self.bounds)
            .unwrap()
    }
}

/// One flush of `replica` through the fake Redis.
fn flush(replica: &FleetCounts, redis: &FakeRedis, seen: &mut usize, now_ms: u64) {
    let flush = replica
        .with_memory(|counts| counts.take_flush(Warmth::Always, now_ms))
        .unwrap();
    let (totals, announced) = redis.exchange(&flush, seen);
    replica.with_memory(|counts| {
        counts.learn_published(&announced);
        counts.apply_flush(&flush, &totals);
    });
}

/// The minute-window counts the reply gives for key `n` (`None`: the key is not in it).
fn minute_of(reply: &FleetSyncReply, n: u32) -> Option<Vec<(u64, u64)>> {
    reply
        .keys
        .iter()
        .find(|key| key.key == tag(n))
        .map(|key| key.counts[0].clone())
}

#[test]
fn the_rest_of_the_fleet_excludes_the_caller_and_sums_the_others() {
    each("rest", |f| {
        let first = f.sync("a", vec![key(1, Some(100), &[(NOW - 1, 3), (NOW, 2)])]);
        assert!(first.keys.is_empty(), "nobody else counted: {first:?}");
        f.sync("b", vec![key(1, Some(100), &[(NOW, 4)])]);
        let reply = f.sync("c", vec![key(1, Some(100), &[(NOW, 1)])]);
        assert_eq!(minute_of(&reply, 1), Some(vec![(NOW - 1, 3), (NOW, 6)]));
        let reply = f.sync("a", vec![key(1, Some(100), &[(NOW, 2)])]);
        assert_eq!(
            minute_of(&reply, 1),
            Some(vec![(NOW, 5)]),
            "zero buckets omitted"
        );
    });
}

#[test]
fn a_retried_sync_changes_nothing_and_a_late_one_lowers_nothing() {
    each("retry", |f| {
        f.sync("a", vec![key(1, Some(100), &[(NOW, 5)])]);
        f.sync("a", vec![key(1, Some(100), &[(NOW, 5)])]);
        let reply = f.sync("b", vec![key(1, Some(100), &[(NOW, 1)])]);
        assert_eq!(
            minute_of(&reply, 1),
            Some(vec![(NOW, 5)]),
            "not 10: absolute"
        );
        f.sync("a", vec![key(1, Some(100), &[(NOW, 3)])]);
        let reply = f.sync("b", vec![key(1, Some(100), &[(NOW, 1)])]);
        assert_eq!(
            minute_of(&reply, 1),
            Some(vec![(NOW, 5)]),
            "max, not the latest"
        );
        f.sync("a", vec![key(1, Some(100), &[(NOW, 8)])]);
        let reply = f.sync("b", vec![key(1, Some(100), &[(NOW, 1)])]);
        assert_eq!(
            minute_of(&reply, 1),
            Some(vec![(NOW, 8)]),
            "raised, not summed"
        );
    });
}

#[test]
fn counts_leave_with_their_window() {
    each("expiry", |f| {
        f.sync("a", vec![key(1, Some(100), &[(NOW, 5)])]);
        // 29 buckets later bucket NOW is still the window's oldest.
        let later = NOW_MS + 29 * 2_000;
        let reply = f.sync_at("b", vec![key(1, Some(100), &[(NOW + 29, 1)])], later);
        assert_eq!(minute_of(&reply, 1), Some(vec![(NOW, 5)]));
        let reply = f.sync_at(
            "b",
            vec![key(1, Some(100), &[(NOW + 30, 1)])],
            later + 2_000,
        );
        assert_eq!(minute_of(&reply, 1), None, "one bucket further it is out");
        // Out of the window but within the slack, a late post is still counted, and forgotten
        // one bucket later.
        let much_later = NOW_MS + 60 * 60_000;
        f.sync_at("c", vec![key(2, Some(100), &[(NOW, 1)])], much_later);
        let held: i64 = f
            .store
            .read(|tx| tx.query_row("SELECT COUNT(*) FROM fleet_counts", (), |row| row.get(0)))
            .unwrap();
        if matches!(f.counts, FleetCounts::Database(_)) {
            assert_eq!(held, 0, "old buckets were deleted");
        }
    });
}

#[test]
fn the_memory_forgets_keys_nobody_sends_any_more() {
    let (store, dir) = temp_store("fleet", "sweep");
    let counts = FleetCounts::for_store(&store, false);
    let f = Fixture {
        counts,
        other: None,
        store,
        dir,
        bounds: FleetBounds::new(DEFAULT_MAX_PROXY_RATE),
    };
    f.sync(
        "a",
        (0..100).map(|n| key(n, Some(10), &[(NOW, 1)])).collect(),
    );
    let held = |f: &Fixture| match &f.counts {
        FleetCounts::Memory(counts) => counts.lock().unwrap().key_count(),
        _ => usize::MAX,
    };
    assert_eq!(held(&f), 100);
    // An hour later another key is synced: the sweep drops the 100 (the minute window is long
    // gone; the hour window's buckets of them were never posted).
    f.sync_at(
        "a",
        vec![key(500, Some(10), &[(NOW + 1_800, 1)])],
        NOW_MS + 3_600_000,
    );
    assert_eq!(held(&f), 1);
}

#[test]
fn hot_keys_of_several_envoys_reach_envoys_that_never_saw_them() {
    each("hot", |f| {
        // Key 1: 4 of 10 at A (cool); key 2: 6 of 10 at A (hot, but only A counts it).
        f.sync(
            "a",
            vec![key(1, Some(10), &[(NOW, 4)]), key(2, Some(10), &[(NOW, 6)])],
        );
        let reply = f.sync("b", vec![key(3, Some(10), &[(NOW, 1)])]);
        assert_eq!(
            minute_of(&reply, 2),
            None,
            "one Envoy's key: it hears at its first sync"
        );
        assert_eq!(minute_of(&reply, 1), None, "below half its limit");
        assert_eq!(minute_of(&reply, 3), None, "nobody else counted it");
        // One Envoy's key at its limit is pushed all the same: the next Envoy refuses at once.
        f.sync("a", vec![key(4, Some(10), &[(NOW, 10)])]);
        let reply = f.sync("b", vec![]);
        assert_eq!(minute_of(&reply, 4), Some(vec![(NOW, 10)]));
        // B's count makes key 1 hot fleet-wide: C, which never saw it, hears of it.
        f.sync("b", vec![key(1, Some(10), &[(NOW, 1)])]);
        let reply = f.sync("c", vec![]);
        assert_eq!(minute_of(&reply, 1), Some(vec![(NOW, 5)]));
        // Once B counts key 2 too, it is pushed as well.
        f.sync("b", vec![key(2, Some(10), &[(NOW, 1)])]);
        let reply = f.sync("c", vec![]);
        assert_eq!(minute_of(&reply, 2), Some(vec![(NOW, 7)]));
        // A itself gets key 2 back only as the rest of the fleet.
        let reply = f.sync("a", vec![]);
        assert_eq!(minute_of(&reply, 2), Some(vec![(NOW, 1)]));
        assert_eq!(minute_of(&reply, 1), Some(vec![(NOW, 1)]));
        // A window later nothing is hot any more.
        let reply = f.sync_at("c", vec![], NOW_MS + 61_000);
        assert!(reply.keys.is_empty(), "{reply:?}");
    });
}

#[test]
fn the_answer_is_capped_posted_keys_first() {
    each("cap", |f| {
        // Ten keys hot (2 of 2) and counted by two Envoys.
        let hot: Vec<KeyCounts> = (0..10).map(|n| key(n, Some(2), &[(NOW, 1)])).collect();
        f.sync("a", hot.clone());
        f.sync("d", hot);
        let many: Vec<KeyCounts> = (100..100 + MAX_KEYS_PER_SYNC as u32)
            .map(|n| key(n, Some(1_000), &[(NOW, 1)]))
            .collect();
        f.sync("b", many.clone());
        let reply = f.sync("c", many);
        assert_eq!(reply.keys.len(), MAX_KEYS_PER_SYNC);
        assert!(
            reply.keys.iter().all(|key| key.key >= tag(100)),
            "posted keys first"
        );
        let reply = f.sync("c", vec![key(100, Some(1_000), &[(NOW, 1)])]);
        assert_eq!(reply.keys.len(), 11, "one posted key, then the 10 hot ones");
        assert_eq!(reply.keys[0].key, tag(100));
    });
}

#[test]
fn envoys_with_other_bucket_widths_are_counted_apart() {
    each("widths", |f| {
        f.sync("a", vec![key(1, Some(100), &[(NOW, 5)])]);
        let post = FleetSyncPost {
            proxy_id: "b".into(),
            bucket_ms: [1_000, 120_000, 3_600_000],
            window_ms: WINDOW_MS,
            keys: vec![key(1, Some(100), &[(NOW * 2, 1)])],
        };
        let reply = f.post(&post, NOW_MS);
        assert!(reply.keys.is_empty(), "{reply:?}");
    });
}

#[path = "tests/bounds.rs"]
mod bounds_tests;
