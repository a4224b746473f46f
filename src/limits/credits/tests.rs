//! Credits: what a worker asks for and serves, and, over a `FakeHost` shared by several
//! workers, that counting ahead never admits what the shared count has not counted.

use super::*;
use crate::host::FakeHost;
use crate::limits::counters::{grow, owner_and_seed, read_slot, slot_count};
use crate::limits::window::{Refusal, WindowUsage};
use keygate_contract::key_hash::digest_key;

const KEY: KeyTag = (7, 130);
const LIMITS: [u64; 3] = [6_400, 0, 0];

fn usage(remaining: u64, reset_ms: u64) -> Usage {
    let mut usage = Usage::default();
    usage.windows[0] = Some(WindowUsage {
        limit: 6_400,
        remaining,
        reset_ms,
    });
    usage
}

fn counted(granted: u64, remaining: u64) -> Settled {
    Settled::Counted {
        granted,
        usage: usage(remaining, 60_000),
    }
}

#[test]
fn a_key_asks_for_more_while_its_credits_run_out_early_up_to_the_most() {
    let mut credits = Credits::default();
    let buckets = [5, 0, 0];
    assert_eq!(credits.ask(KEY, LIMITS, 10_000).ahead, Ahead::ONE);
    credits.settle(KEY, LIMITS, buckets, counted(1, 100), 10_000);
    // Its one request used at once: the next count asks for twice what the grant admitted.
    assert_eq!(credits.ask(KEY, LIMITS, 10_001).ahead.want, 2);
    credits.settle(KEY, LIMITS, buckets, counted(2, 99), 10_001);
    assert!(credits.take(KEY, LIMITS, buckets, 10_002).is_some());
    assert_eq!(credits.ask(KEY, LIMITS, 10_003).ahead.want, 4);
    for now_ms in 10_004..10_014 {
        let want = credits.ask(KEY, LIMITS, now_ms).ahead.want;
        credits.settle(KEY, LIMITS, buckets, counted(want, 50), now_ms);
        while credits.take(KEY, LIMITS, buckets, now_ms).is_some() {}
    }
    assert_eq!(credits.ask(KEY, LIMITS, 10_014).ahead.want, MAX_ASK);
}

#[test]
fn credits_serve_their_time_bucket_and_limits_only_telling_what_each_request_left() {
    let mut credits = Credits::default();
    let buckets = [5, 0, 0];
    credits.settle(KEY, LIMITS, buckets, counted(4, 100), 10_000);
    let first = credits.take(KEY, LIMITS, buckets, 10_020).unwrap();
    assert_eq!(
        first.windows[0].map(|u| (u.remaining, u.reset_ms)),
        Some((99, 59_980))
    );
    // Not under other limits (the plan changed), not in the next bucket, not another key's.
    assert!(credits.take(KEY, [6_400, 10, 0], buckets, 10_020).is_none());
    assert!(credits.take(KEY, LIMITS, [6, 0, 0], 10_020).is_none());
    assert!(credits.take((7, 194), LIMITS, buckets, 10_020).is_none());
    let second = credits.take(KEY, LIMITS, buckets, 10_040).unwrap();
    assert_eq!(second.windows[0].map(|u| u.remaining), Some(98));
    // Not past their time, though one is left.
    assert!(credits
        .take(KEY, LIMITS, buckets, 10_000 + CREDIT_TTL_MS)
        .is_none());
}

#[test]
fn a_grant_past_its_time_sizes_the_next_by_what_it_admitted_and_gives_back_the_rest() {
    let mut credits = Credits::default();
    credits.settle(KEY, LIMITS, [5, 0, 0], counted(10, 100), 10_000);
    for _ in 0..3 {
        credits.take(KEY, LIMITS, [5, 0, 0], 10_010).unwrap();
    }
    let ask = credits.ask(KEY, LIMITS, 10_060);
    assert_eq!(ask.ahead.want, 4, "one counted and three credited");
    assert_eq!(
        ask.ahead.give_back,
        Some(GiveBack {
            count: 6,
            buckets: [5, 0, 0],
            limited: [true, false, false],
        })
    );
    // Counting again took them back: nothing is given twice.
    credits.settle(KEY, LIMITS, [5, 0, 0], counted(4, 100), 10_060);
    assert_eq!(
        credits
            .ask(KEY, LIMITS, 10_120)
            .ahead
            .give_back
            .map(|b| b.count),
        Some(3)
    );
    // A key not seen for twice their time starts again from one.
    assert_eq!(credits.ask(KEY, LIMITS, 10_160).ahead.want, 1);
    // So does a key whose limits changed.
    assert_eq!(credits.ask(KEY, [100, 0, 0], 10_061).ahead.want, 1);
}

#[test]
fn unwritten_counts_keep_their_credits_and_refused_ones_gave_them_back() {
    let mut credits = Credits::default();
    credits.settle(KEY, LIMITS, [5, 0, 0], counted(10, 100), 10_000);
    credits.settle(KEY, LIMITS, [6, 0, 0], Settled::Unwritten, 12_000);
    let back = credits.ask(KEY, LIMITS, 12_000).ahead.give_back;
    assert_eq!(back.map(|b| b.count), Some(9));
    credits.settle(KEY, LIMITS, [6, 0, 0], Settled::Refused, 12_000);
    assert_eq!(credits.ask(KEY, LIMITS, 12_000).ahead.give_back, None);
}

#[test]
fn a_key_taking_another_keys_place_has_its_credits_given_back() {
    let mut credits = Credits::default();
    let other = (8, KEY.1 + ENTRIES as u64);
    credits.settle(KEY, LIMITS, [5, 0, 0], counted(10, 100), 10_000);
    let ask = credits.ask(other, LIMITS, 10_000);
    assert_eq!(ask.ahead, Ahead::ONE);
    assert_eq!(
        ask.evicted.map(|(key, back)| (key, back.count)),
        Some((KEY, 9))
    );
    credits.forget(KEY);
    assert_eq!(credits.ask(other, LIMITS, 10_000).evicted, None);
}

/// Workers counting one key in shared data, as Envoy's workers do.
struct Fleet {
    host: FakeHost,
    workers: Vec<RefCell<Credits>>,
    windows: Windows,
    capacity: u64,
}

impl Fleet {
    fn new(workers: usize) -> Fleet {
        let host = FakeHost::at(0);
        let capacity = grow(&host, 64, 1 << 20, 0).unwrap().capacity;
        Fleet {
            host,
            workers: (0..workers).map(|_| RefCell::default()).collect(),
            windows: Windows::default(),
            capacity,
        }
    }

    fn admit(&self, worker: usize, key: KeyTag, limits: &Limits) -> Admission {
        self.admit_noting(worker, key, limits, &mut |_| {})
    }

    /// `admit`, telling `written` the slots of other keys it wrote.
    fn admit_noting(
        &self,
        worker: usize,
        key: KeyTag,
        limits: &Limits,
        written: &mut dyn FnMut(u64),
    ) -> Admission {
        let table = Table {
            host: &self.host,
            windows: &self.windows,
            capacity: self.capacity,
            now_ms: self.host.now.get(),
        };
        admit(&self.workers[worker], &table, key, limits, written)
    }

    /// This Envoy's count of `key` in the minute window now.
    fn counted(&self, key: KeyTag) -> u64 {
        let now_ms = self.host.now.get();
        (0..slot_count(&self.host))
            .filter_map(|slot| read_slot(&self.host, slot))
            .filter(|state| (state.owner, state.seed) == key)
            .map(|state| {
                state.local_buckets(&self.windows, now_ms)[0]
                    .iter()
                    .map(|b| b.1)
                    .sum::<u64>()
            })
            .sum()
    }
}

fn minute(limit: u64) -> Limits {
    Limits {
        per_minute: Some(limit),
        per_hour: None,
        per_day: None,
        concurrent: None,
    }
}

#[test]
fn a_busy_key_is_counted_in_shared_data_once_per_many_requests() {
    let fleet = Fleet::new(2);
    let key = owner_and_seed(&digest_key("busy"));
    let limits = minute(1_000_000);
    let (mut credited, mut written) = (0, 0);
    // 10 requests a millisecond, as a worker busy with one key sees them.
    for request in 0..2_000 {
        fleet.host.now.set(request / 10);
        match fleet.admit(request as usize % 2, key, &limits) {
            Admission::Credited { .. } => credited += 1,
            Admission::Admitted { .. } => written += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(written <= 2_000 / 32, "{written} counts in shared data");
    assert_eq!(credited + written, 2_000);
    // Every admitted request was counted, and at most two grants ahead are not used yet.
    let counted = fleet.counted(key);
    assert!(
        (2_000..=2_000 + 2 * MAX_ASK).contains(&counted),
        "{counted}"
    );
}

#[test]
fn counting_ahead_never_admits_past_the_limit_and_gives_back_what_it_did_not_use() {
    let fleet = Fleet::new(3);
    let key = owner_and_seed(&digest_key("limited"));
    let limits = minute(6_400);
    let (mut admitted, mut credited, mut refused) = (0, 0, 0);
    // 10,000 requests in 20 s from three workers: the minute's limit is reached within it.
    for request in 0..10_000u64 {
        fleet.host.now.set(request * 2);
        match fleet.admit((request % 3) as usize, key, &limits) {
            Admission::Credited { .. } => {
                admitted += 1;
                credited += 1;
            }
            Admission::Admitted { .. } => admitted += 1,
            Admission::Refused {
                refusal: Refusal::Rate { .. },
                ..
            } => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(admitted, 6_400, "exactly the limit, {refused} refused");
    assert!(
        credited > 1_000,
        "counting ahead was used: {credited} credited"
    );
    // Past half the limit each request was counted one by one: the count is exact.
    assert_eq!(fleet.counted(key), 6_400);
}

#[test]
fn credits_not_used_come_back_with_the_next_count() {
    let fleet = Fleet::new(1);
    let key = owner_and_seed(&digest_key("bursty"));
    let limits = minute(1_000_000);
    // A burst within one 2 s bucket grows the grant...
    for request in 0..100 {
        fleet.host.now.set(request);
        fleet.admit(0, key, &limits);
    }
    let early = fleet.counted(key);
    assert!(early > 100, "credits ahead: {early}");
    // ...one request later, in another bucket, gives back what the burst did not use.
    fleet.host.now.set(10_000);
    assert!(matches!(
        fleet.admit(0, key, &limits),
        Admission::Admitted { granted: 1, .. }
    ));
    assert_eq!(fleet.counted(key), 101);
}

#[test]
fn keys_sharing_a_place_give_back_each_others_credits() {
    let fleet = Fleet::new(1);
    let limits = minute(1_000_000);
    let a = (11, 3);
    let b = (12, 3 + ENTRIES as u64);
    for request in 0..50 {
        fleet.host.now.set(request);
        fleet.admit(0, a, &limits);
    }
    assert!(fleet.counted(a) > 50);
    fleet.admit(0, b, &limits);
    assert_eq!(fleet.counted(a), 50);
    assert_eq!(fleet.counted(b), 1);
}

#[test]
fn a_concurrency_limit_counts_every_request() {
    let fleet = Fleet::new(1);
    let key = (13, 4);
    let limits = Limits {
        concurrent: Some(1_000),
        ..minute(1_000_000)
    };
    for request in 0..20 {
        fleet.host.now.set(request);
        assert!(matches!(
            fleet.admit(0, key, &limits),
            Admission::Admitted { granted: 1, .. }
        ));
    }
}

#[test]
fn credits_a_worker_stopped_using_are_given_back_by_its_other_requests() {
    let fleet = Fleet::new(1);
    let limits = minute(1_000_000);
    let (idle, other) = ((21, 5), (22, 6));
    for request in 0..50 {
        fleet.host.now.set(request);
        fleet.admit(0, idle, &limits);
    }
    let ahead = fleet.counted(idle) - 50;
    assert!(ahead > 0, "credits ahead");
    // Within their time, the other key's requests leave them alone...
    fleet.host.now.set(60);
    for _ in 0..ENTRIES {
        fleet.admit(0, other, &limits);
    }
    assert_eq!(fleet.counted(idle), 50 + ahead);
    // ...past it, one pass over the table gives them back, and says which slot it wrote.
    fleet.host.now.set(60 + CREDIT_TTL_MS);
    let mut written = Vec::new();
    for _ in 0..ENTRIES {
        fleet.admit_noting(0, other, &limits, &mut |slot| written.push(slot));
    }
    assert_eq!(fleet.counted(idle), 50);
    assert_eq!(written.len(), 1);
    assert_eq!(
        read_slot(&fleet.host, written[0]).map(|s| (s.owner, s.seed)),
        Some(idle)
    );
}

#[test]
fn a_key_whose_plan_gains_a_concurrency_limit_gives_back_its_credits() {
    let fleet = Fleet::new(1);
    let key = (23, 7);
    for request in 0..50 {
        fleet.host.now.set(request);
        fleet.admit(0, key, &minute(1_000_000));
    }
    assert!(fleet.counted(key) > 50);
    let serial = Limits {
        concurrent: Some(10),
        ..minute(1_000_000)
    };
    assert!(matches!(
        fleet.admit(0, key, &serial),
        Admission::Admitted { granted: 1, .. }
    ));
    assert_eq!(fleet.counted(key), 51);
}

#[test]
fn giving_back_what_is_no_longer_counted_writes_nothing() {
    let fleet = Fleet::new(1);
    let back = GiveBack {
        count: 5,
        buckets: fleet.windows.buckets_at(0),
        limited: [true, false, false],
    };
    let entries = fleet.host.entry_count();
    let (windows, capacity) = (&fleet.windows, fleet.capacity);
    let slot = counters::give_back(&fleet.host, (24, 8), &back, windows, capacity, 0);
    assert_eq!(slot, None);
    assert_eq!(
        fleet.host.entry_count(),
        entries,
        "no slot created for nothing"
    );
}
