//! The fleet sync through its runner and `FakeHost`: touched keys sent and the rest of the
//! fleet's counts applied, a failed sync's keys sent again with their current counts, one
//! worker at a time and one proxy id for the Envoy.

use std::rc::Rc;

use super::*;
use crate::config::Config;
use crate::host::{DispatchedCall, FakeHost};
use crate::limits::counters::{admit, grow, owner_and_seed as slot_key_of, Admission};
use crate::sync::queue::FakeQueue;
use crate::sync::task::Runner;
use keygate_contract::key_hash::digest_key;
use keygate_contract::snapshot::Limits;

const SLOTS: u64 = 64;

type Sync = Runner<FleetSync>;

/// Syncs every second, calls time out after 2 s, through `queue` (shared by the workers).
fn sync(me: u64, queue: &Rc<FakeQueue>) -> Sync {
    let json = r#"{"control":{"cluster":"kc","token":"t","timeout":"2s"},"rate_limits":{"sync_interval":"1s"}}"#;
    let config = Config::parse(json.as_bytes(), &|_| None).unwrap();
    let mut job = FleetSync::new(
        me,
        &config.control,
        &config.rate_limits,
        Box::new(Rc::clone(queue)),
    );
    job.note_slot_count(SLOTS);
    Runner::new(job, me, "kc")
}

/// Hands `touched` over and ticks: the sync that went out, if any, and the first outcome.
fn poll(
    sync: &mut Sync,
    host: &FakeHost,
    touched: &mut Touched,
) -> (Option<DispatchedCall>, Option<FleetOutcome>) {
    sync.job().hand_over(touched);
    let outcomes = sync.tick(host);
    (host.take_calls().pop(), outcomes.into_iter().next())
}

fn answer(
    sync: &mut Sync,
    host: &FakeHost,
    token: u32,
    status: Option<u32>,
    body: &[u8],
) -> Option<FleetOutcome> {
    let size = host.respond(status, body);
    sync.on_response(host, token, size).into_iter().next()
}

fn post_of(call: &DispatchedCall) -> FleetSyncPost {
    serde_json::from_slice(call.body.as_deref().unwrap()).unwrap()
}

fn per_minute(limit: u64) -> Limits {
    Limits {
        per_minute: Some(limit),
        per_hour: None,
        per_day: None,
        concurrent: None,
    }
}

fn admit_one(host: &FakeHost, secret: &str, limit: u64) -> (Admission, u64) {
    let admission = admit(
        host,
        slot_key_of(&digest_key(secret)),
        &per_minute(limit),
        &Windows::default(),
        SLOTS,
        host.now_ms(),
    );
    let slot = match admission {
        Admission::Admitted { slot, .. } => slot,
        _ => u64::MAX,
    };
    (admission, slot)
}

#[test]
fn a_sync_sends_touched_keys_and_applies_the_rest_of_the_fleet() {
    let host = FakeHost::at(1_000_000);
    let queue = Rc::new(FakeQueue::default());
    grow(&host, SLOTS, SLOTS, 0).unwrap();
    let mut touched = Touched::default();
    for _ in 0..3 {
        let (_, slot) = admit_one(&host, "pk_live_busy", 10);
        touched.insert(slot);
    }
    let mut sync = sync(7, &queue);
    let (call, _) = poll(&mut sync, &host, &mut touched);
    let call = call.expect("the first worker takes the lease and syncs");
    assert_eq!(
        (call.path(), call.header(":method")),
        ("/v1/ratelimits/sync", Some("POST"))
    );
    assert!(touched.is_empty());
    let post = post_of(&call);
    assert!(fleet::validate_post(&post).is_ok(), "{post:?}");
    assert_eq!(post.keys.len(), 1);
    let tag = fleet::key_tag(&digest_key("pk_live_busy"));
    assert_eq!(post.keys[0].key, tag);
    assert_eq!(post.keys[0].limits, [Some(10), None, None]);
    let bucket = 1_000_000 / 2_000;
    assert_eq!(post.keys[0].counts[0], vec![(bucket, 3)]);
    // The rest of the fleet admitted 6; another key is hot elsewhere and new here.
    let other = fleet::key_tag(&digest_key("pk_live_elsewhere"));
    let reply = serde_json::json!({"keys": [
        {"key": tag, "counts": [[[bucket, 6]], [], []]},
        {"key": other, "counts": [[[bucket, 10]], [], []]},
        {"key": "not-a-tag", "counts": [[], [], []]},
    ], "later": 1});
    let body = serde_json::to_vec(&reply).unwrap();
    assert_eq!(
        answer(&mut sync, &host, call.token, Some(200), &body),
        Some(FleetOutcome::Synced {
            keys_sent: 1,
            keys_updated: 2,
            keys_skipped: 1
        })
    );
    // 3 here + 6 elsewhere: one more fits in 10, then 429.
    assert!(matches!(
        admit_one(&host, "pk_live_busy", 10).0,
        Admission::Admitted { .. }
    ));
    assert!(matches!(
        admit_one(&host, "pk_live_busy", 10).0,
        Admission::Refused { .. }
    ));
    // The key never seen here is refused at once: the fleet has used its 10.
    assert!(matches!(
        admit_one(&host, "pk_live_elsewhere", 10).0,
        Admission::Refused { .. }
    ));
}

#[test]
fn a_failed_sync_puts_its_keys_back_and_the_next_sends_current_counts() {
    // (status, body, why it failed)
    let cases: [(Option<u32>, &[u8], FleetError); 4] = [
        (Some(503), b"", FleetError::Status(503)),
        (None, b"", FleetError::NoResponse),
        (Some(200), b"<html>", FleetError::NotAReply),
        (Some(200), b"", FleetError::NotAReply),
    ];
    for (status, body, error) in cases {
        let host = FakeHost::at(1_000_000);
        let queue = Rc::new(FakeQueue::default());
        grow(&host, SLOTS, SLOTS, 0).unwrap();
        let mut touched = Touched::default();
        let (_, slot) = admit_one(&host, "pk_live_retry", 100);
        touched.insert(slot);
        let mut sync = sync(7, &queue);
        let call = poll(&mut sync, &host, &mut touched).0.unwrap();
        assert_eq!(
            answer(&mut sync, &host, call.token, status, body),
            Some(FleetOutcome::Failed(error))
        );
        // Meanwhile one more request; after the backoff the retry carries both.
        admit_one(&host, "pk_live_retry", 100);
        host.now.set(host.now.get() + 1_000);
        let call = poll(&mut sync, &host, &mut Touched::default()).0.unwrap();
        let post = post_of(&call);
        let total: u64 = post.keys[0].counts[0].iter().map(|(_, count)| count).sum();
        assert_eq!(total, 2, "{status:?}");
    }
}

#[test]
fn one_worker_syncs_at_a_time_and_the_proxy_id_outlives_the_holder() {
    let host = FakeHost::at(5_000);
    let queue = Rc::new(FakeQueue::default());
    let mut first = sync(1, &queue);
    let mut second = sync(2, &queue);
    let call = poll(&mut first, &host, &mut Touched::default()).0.unwrap();
    let id = post_of(&call);
    assert!(poll(&mut second, &host, &mut Touched::default())
        .0
        .is_none());
    answer(&mut first, &host, call.token, Some(200), br#"{"keys":[]}"#);
    host.now.set(host.now.get() + 1_000);
    assert_eq!(remote_age_seconds(&host), 1);
    let call = poll(&mut second, &host, &mut Touched::default()).0.unwrap();
    assert_eq!(post_of(&call).proxy_id, id.proxy_id);
}
