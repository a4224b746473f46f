//! The refresh's lease through its runner and `FakeHost`: one fetch per Envoy, stalled calls
//! abandoned, backoff, fencing of a holder whose lease ran out, takeovers mid-write, clock
//! steps, and the sweep of a replaced shard set.

use super::tests::{answer, control, fetch, page, record_json, refresher, tick};
use super::*;
use crate::host::FakeHost;
use crate::store::{lookup, read_meta, MetaError};
use crate::sync::lease::backoff_ms;
use crate::sync::task::LEASE_MARGIN_MS;
use keygate_contract::key_hash::hash_key;

#[test]
fn a_holder_whose_lease_expired_mid_load_never_publishes() {
    let host = FakeHost::at(10_000);
    let mut slow = refresher(1, control(""));
    let mut other = refresher(2, control(""));
    // `slow` claims and its call stalls past its lease (deadline + margin).
    let stalled = tick(&mut slow, &host).0.expect("slow claims");
    host.now.set(10_000 + 2_000 + 1_000 + LEASE_MARGIN_MS + 1);
    // `other` takes over (it does not tick `slow`, whose VM may be stuck) and loads v2.
    let (_, outcome) = fetch(
        &mut other,
        &host,
        Some(200),
        &page(2, true, 0, &[record_json("current", true)], &[], None),
    );
    assert!(matches!(outcome, Outcome::Applied { version: 2, .. }));
    let published = read_meta(&host);
    // The stale answer finally reaches `slow`: nothing of it is published or written.
    let stale = page(1, true, 0, &[record_json("stale", true)], &[], None);
    let outcome = answer(&mut slow, &host, stalled.token, Some(200), &stale);
    assert_eq!(outcome, Some(Outcome::Lost));
    assert_eq!(read_meta(&host), published);
    assert!(lookup(&host, &hash_key("stale"), 0).is_none());
    // And a holder with an older token cannot write the store record at all.
    assert_eq!(
        store::update_meta(&host, published.fence - 1, StoreMeta::clone),
        Err(MetaError::Fenced)
    );
}

#[test]
fn a_takeover_in_the_middle_of_a_page_write_wins() {
    // Envoy's workers run in parallel: while `slow` writes the keys of its page, its lease
    // runs out and `other` claims, loads and publishes a newer snapshot. `slow` must not
    // publish over it, and what it wrote must not count as current.
    let host = FakeHost::at(10_000);
    let mut slow = refresher(1, control(""));
    let call = tick(&mut slow, &host).0.expect("slow claims");
    host.interleave("s", |host| {
        host.now
            .set(host.now.get() + 2_000 + 1_000 + LEASE_MARGIN_MS + 1);
        let mut other = refresher(2, control(""));
        let fresh = page(2, true, 0, &[record_json("current", true)], &[], None);
        let (_, outcome) = fetch(&mut other, host, Some(200), &fresh);
        assert!(
            matches!(outcome, Outcome::Applied { version: 2, .. }),
            "the expired lease can be taken over: {outcome:?}"
        );
    });
    let stale = page(1, true, 0, &[record_json("stale", true)], &[], None);
    let outcome = answer(&mut slow, &host, call.token, Some(200), &stale);
    assert!(
        matches!(
            outcome,
            Some(Outcome::Failed(RefreshError::Meta {
                step: MetaStep::RecordSnapshot,
                error: MetaError::Fenced
            }))
        ),
        "{outcome:?}"
    );
    let meta = read_meta(&host);
    assert_eq!(meta.version, 2);
    assert!(lookup(&host, &hash_key("current"), meta.generation).is_some());
    assert!(lookup(&host, &hash_key("stale"), meta.generation).is_none());
}

#[test]
fn an_aborted_full_load_stays_dead_when_the_clock_steps_back() {
    let host = FakeHost::at(1_000_000);
    let mut refresher = refresher(1, control(""));
    fetch(
        &mut refresher,
        &host,
        Some(200),
        &page(1, true, 0, &[record_json("kept", true)], &[], None),
    );
    // A paged full load writes its first page, then is abandoned.
    host.now.set(10_000_000_000);
    let (_, outcome) = fetch(
        &mut refresher,
        &host,
        Some(200),
        &page(2, true, 0, &[record_json("ghost", true)], &[], Some("c1")),
    );
    assert!(matches!(outcome, Outcome::NextPage { .. }));
    host.now.set(10_000_000_000 + 60_000);
    let (_, abandoned) = tick(&mut refresher, &host);
    assert_eq!(
        abandoned,
        [Outcome::Failed(RefreshError::Call(CallError::TimedOut))]
    );
    // The clock steps back below the aborted load's generation; the next full snapshot
    // (which no longer has `ghost`) must still retire what that load wrote.
    host.now.set(2_000_000_000);
    let (_, outcome) = fetch(
        &mut refresher,
        &host,
        Some(200),
        &page(3, true, 0, &[record_json("kept", true)], &[], None),
    );
    assert!(
        matches!(outcome, Outcome::Applied { version: 3, .. }),
        "{outcome:?}"
    );
    let meta = read_meta(&host);
    assert!(meta.generation > 10_000_000_000, "{meta:?}");
    assert!(lookup(&host, &hash_key("kept"), meta.generation).is_some());
    assert!(lookup(&host, &hash_key("ghost"), meta.generation).is_none());
}

#[test]
fn failures_back_off_and_recover() {
    let host = FakeHost::at(10_000);
    let mut refresher = refresher(1, control(""));
    let (_, outcome) = fetch(&mut refresher, &host, None, b"");
    assert!(matches!(outcome, Outcome::Failed(_)));
    assert_eq!(tick(&mut refresher, &host).0, None, "backing off");
    host.now.set(10_000 + backoff_ms(0));
    let (_, outcome) = fetch(
        &mut refresher,
        &host,
        Some(200),
        &page(1, true, 0, &[], &[], None),
    );
    assert!(matches!(outcome, Outcome::Applied { .. }));
}

#[test]
fn one_fetch_per_envoy_and_stalled_calls_are_abandoned() {
    let host = FakeHost::at(10_000);
    let mut worker_a = refresher(1, control(""));
    let mut worker_b = refresher(2, control(""));
    let stalled = tick(&mut worker_a, &host).0.expect("A claims");
    assert!(tick(&mut worker_b, &host).0.is_none(), "lease is held");
    // The call never completes: A gives up at its own deadline (timeout + 1 s) ...
    host.now.set(10_000 + 3_000);
    let (request, abandoned) = tick(&mut worker_a, &host);
    assert!(matches!(abandoned[..], [Outcome::Failed(_)]));
    assert!(request.is_none(), "backing off after the abandoned call");
    // ... and a late answer to the abandoned call is ignored.
    assert_eq!(
        answer(&mut worker_a, &host, stalled.token, Some(200), b"{}"),
        None
    );
    // After the backoff, either worker may take over.
    host.now.set(10_000 + 3_000 + backoff_ms(0));
    let call = tick(&mut worker_b, &host).0.expect("B takes over");
    assert_eq!(
        answer(&mut worker_b, &host, call.token + 1, Some(200), b"{}"),
        None,
        "wrong token"
    );
}

#[test]
fn a_dead_holders_lease_expires() {
    let host = FakeHost::at(10_000);
    let mut dead = refresher(1, control(""));
    assert!(tick(&mut dead, &host).0.is_some());
    let mut alive = refresher(2, control(""));
    host.now.set(10_000 + 2_000 + 1_000 + LEASE_MARGIN_MS);
    assert!(tick(&mut alive, &host).0.is_some());
}

#[test]
fn the_set_a_full_snapshot_replaced_is_swept_after_a_delay() {
    let host = FakeHost::at(10_000);
    let mut refresher = refresher(1, control(""));
    let keys: Vec<String> = (0..200)
        .map(|i| record_json(&format!("k{i}"), true))
        .collect();
    fetch(
        &mut refresher,
        &host,
        Some(200),
        &page(1, true, 0, &keys, &[], None),
    );
    host.now.set(100_000);
    let next = page(2, true, 0, &[record_json("k0", true)], &[], None);
    fetch(&mut refresher, &host, Some(200), &next);
    let generation = read_meta(&host).generation;
    let with_both_sets = host.value_bytes();
    // Not before the delay: a request may still hold the old view.
    tick(&mut refresher, &host);
    assert_eq!(host.value_bytes(), with_both_sets);
    // The sweep is a chore of every tick with no call out (here, none ever is).
    let job = refresher.job_mut();
    for _ in 0..(shard::SHARD_COUNT / SWEEP_SHARDS_PER_TICK) {
        host.now.set(host.now.get() + SWEEP_DELAY_MS);
        job.chores(&host, false);
    }
    assert!(job.sweep.is_none());
    assert!(
        host.value_bytes() < with_both_sets / 10,
        "{}",
        host.value_bytes()
    );
    assert!(lookup(&host, &hash_key("k0"), generation).is_some());
    assert!(lookup(&host, &hash_key("k1"), generation).is_none());
}
