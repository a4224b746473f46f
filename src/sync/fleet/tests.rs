//! The fleet sync through its runner and `FakeHost`: touched keys sent and the rest of the
//! fleet's counts applied, a failed sync's keys sent again with their current counts, one
//! worker at a time and one proxy id for the Envoy.

use std::rc::Rc;

use super::*;
use crate::config::Config;
use crate::host::{DispatchedCall, FakeHost};
use crate::limits::counters::{admit, grow, owner_and_seed as slot_key_of, Admission, Ahead};
use crate::sync::queue::LocalQueue;
use crate::sync::task::Runner;
use keygate_contract::key_hash::digest_key;
use keygate_contract::snapshot::Limits;

const SLOTS: u64 = 64;

type Sync = Runner<FleetSync>;

/// Syncs every second, calls time out after 2 s, through `queue` (shared by the workers).
fn sync(me: u64, queue: &Rc<LocalQueue>) -> Sync {
    sync_in(me, queue, "binary")
}

/// Like `sync`, with `rate_limits.sync_encoding` set to `encoding`.
fn sync_in(me: u64, queue: &Rc<LocalQueue>, encoding: &str) -> Sync {
    let json = format!(
        r#"{{"control":{{"cluster":"kc","token":"t","timeout":"2s"}},"rate_limits":{{"sync_interval":"1s","sync_encoding":"{encoding}"}}}}"#
    );
    let config = Config::parse(json.as_bytes(), &|_| None).unwrap();
    let mut job = FleetSync::new(
        me,
        &config.control,
        &config.rate_limits,
        Box::new(Rc::clone(queue)),
    );
    job.note_slot_count(SLOTS);
    Runner::new(job, me, "kc").presenting(&config.control)
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

/// The post a call carries, read as its `content-type` says.
fn post_of(call: &DispatchedCall) -> FleetSyncPost {
    let body = call.body.as_deref().unwrap();
    match call.header("content-type") {
        Some(binary::MEDIA_TYPE) => binary::decode_post(body).unwrap(),
        Some("application/json") => serde_json::from_slice(body).unwrap(),
        other => panic!("a sync posted as {other:?}"),
    }
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
        Ahead::ONE,
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
    let queue = Rc::new(LocalQueue::default());
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
        let queue = Rc::new(LocalQueue::default());
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
    let queue = Rc::new(LocalQueue::default());
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

/// One key admitted `count` times, handed to `sync`'s queue; the call that went out.
fn sync_one(sync: &mut Sync, host: &FakeHost, secret: &str, count: usize) -> DispatchedCall {
    grow(host, SLOTS, SLOTS, 0).unwrap();
    let mut touched = Touched::default();
    for _ in 0..count {
        let (_, slot) = admit_one(host, secret, 100);
        touched.insert(slot);
    }
    poll(sync, host, &mut touched).0.expect("the sync goes out")
}

#[test]
fn syncs_are_binary_by_default_and_json_when_configured() {
    let host = FakeHost::at(1_000_000);
    let queue = Rc::new(LocalQueue::default());
    let mut binary_sync = sync(7, &queue);
    let call = sync_one(&mut binary_sync, &host, "pk_live_binary", 2);
    assert_eq!(call.header("content-type"), Some(binary::MEDIA_TYPE));
    assert_eq!(call.header("accept"), Some(binary::ACCEPT));
    assert!(binary::is_binary(call.body.as_deref().unwrap()));
    let post = post_of(&call);
    assert!(fleet::validate_post(&post).is_ok(), "{post:?}");
    assert_eq!(post.keys[0].counts[0], vec![(1_000_000 / 2_000, 2)]);

    let host = FakeHost::at(1_000_000);
    let mut json_sync = sync_in(7, &Rc::new(LocalQueue::default()), "json");
    let call = sync_one(&mut json_sync, &host, "pk_live_json", 2);
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(call.header("accept"), None);
    let json_post = post_of(&call);
    assert_eq!(
        json_post.keys[0].key,
        fleet::key_tag(&digest_key("pk_live_json"))
    );
    assert_eq!(
        (json_post.keys[0].limits, &json_post.keys[0].counts),
        (post.keys[0].limits, &post.keys[0].counts)
    );
}

#[test]
fn a_binary_answer_is_applied_and_a_damaged_one_is_not_a_reply() {
    let host = FakeHost::at(1_000_000);
    let queue = Rc::new(LocalQueue::default());
    let mut sync = sync(7, &queue);
    let call = sync_one(&mut sync, &host, "pk_live_busy", 3);
    let bucket = 1_000_000 / 2_000;
    let reply = FleetSyncReply {
        keys: vec![KeyCounts {
            key: fleet::key_tag(&digest_key("pk_live_busy")),
            limits: [Some(10), None, None],
            counts: [vec![(bucket, 96)], vec![], vec![]],
        }],
        ..FleetSyncReply::default()
    };
    let body = binary::encode_reply(&reply).unwrap();
    // Cut short, it is no reply at all: nothing applied, the keys go again.
    assert_eq!(
        answer(
            &mut sync,
            &host,
            call.token,
            Some(200),
            &body[..body.len() - 1]
        ),
        Some(FleetOutcome::Failed(FleetError::NotAReply))
    );
    host.now.set(host.now.get() + 1_000);
    let call = poll(&mut sync, &host, &mut Touched::default()).0.unwrap();
    assert_eq!(
        answer(&mut sync, &host, call.token, Some(200), &body),
        Some(FleetOutcome::Synced {
            keys_sent: 1,
            keys_updated: 1,
            keys_skipped: 0
        })
    );
    // 3 here + 96 elsewhere: one more fits in 100.
    assert!(matches!(
        admit_one(&host, "pk_live_busy", 100).0,
        Admission::Admitted { .. }
    ));
    assert!(matches!(
        admit_one(&host, "pk_live_busy", 100).0,
        Admission::Refused { .. }
    ));
}

#[test]
fn a_415_sends_the_same_keys_again_in_json_at_once_and_json_ever_after() {
    let host = FakeHost::at(1_000_000);
    let queue = Rc::new(LocalQueue::default());
    let mut sync = sync(7, &queue);
    let call = sync_one(&mut sync, &host, "pk_live_old_control", 4);
    let sent = post_of(&call);
    let refused = br#"{"error":{"code":"UNSUPPORTED_MEDIA_TYPE","message":"Content-Type must be application/json"}}"#;
    assert_eq!(
        answer(&mut sync, &host, call.token, Some(415), refused),
        Some(FleetOutcome::FellBackToJson)
    );
    let again = host
        .take_calls()
        .pop()
        .expect("the JSON sync follows at once");
    assert_eq!(again.header("content-type"), Some("application/json"));
    assert_eq!(again.header("accept"), None);
    assert_eq!(post_of(&again), sent);
    assert_eq!(
        answer(&mut sync, &host, again.token, Some(200), br#"{"keys":[]}"#),
        Some(FleetOutcome::Synced {
            keys_sent: 1,
            keys_updated: 0,
            keys_skipped: 0
        })
    );
    // Later syncs are JSON from the start; a 415 to JSON is an ordinary failure.
    host.now.set(host.now.get() + 1_000);
    let mut touched = Touched::default();
    touched.insert(admit_one(&host, "pk_live_old_control", 100).1);
    let call = poll(&mut sync, &host, &mut touched).0.unwrap();
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(
        answer(&mut sync, &host, call.token, Some(415), refused),
        Some(FleetOutcome::Failed(FleetError::Status(415)))
    );
    assert!(host.take_calls().is_empty());
}

/// Admits one request of `secret` at the host's time, syncs it, and answers the sync 200: the
/// post, and whether it was marked as carrying only the changed buckets.
fn sync_answered(sync: &mut Sync, host: &FakeHost, secret: &str) -> (FleetSyncPost, bool) {
    grow(host, SLOTS, SLOTS, 0).unwrap();
    let mut touched = Touched::default();
    touched.insert(admit_one(host, secret, 1_000).1);
    let call = poll(sync, host, &mut touched).0.expect("a sync is due");
    let empty = binary::encode_reply(&FleetSyncReply::default()).unwrap();
    assert!(matches!(
        answer(sync, host, call.token, Some(200), &empty),
        Some(FleetOutcome::Synced { .. })
    ));
    let changed_only = match call.header(fleet::BUCKETS_HEADER) {
        None => false,
        Some(value) => {
            assert_eq!(value, fleet::BUCKETS_CHANGED);
            true
        }
    };
    (post_of(&call), changed_only)
}

fn minute_buckets(post: &FleetSyncPost) -> Vec<u64> {
    post.keys[0].counts[0]
        .iter()
        .map(|&(bucket, _)| bucket)
        .collect()
}

#[test]
fn after_an_answered_sync_a_post_carries_only_the_buckets_that_can_have_changed() {
    // Minute buckets are 2 s wide: at 1,000 s the bucket is 500.
    let host = FakeHost::at(1_000_000);
    let queue = Rc::new(LocalQueue::default());
    let mut sync = sync(7, &queue);
    let (_, changed_only) = sync_answered(&mut sync, &host, "pk_live_steady");
    assert!(!changed_only, "the first post carries every bucket");
    host.now.set(1_010_000);
    let (second, changed_only) = sync_answered(&mut sync, &host, "pk_live_steady");
    assert!(changed_only);
    // From two intervals before the last answered sync started (998 s: bucket 499) on.
    assert_eq!(minute_buckets(&second), vec![500, 505]);
    host.now.set(1_020_000);
    let (third, changed_only) = sync_answered(&mut sync, &host, "pk_live_steady");
    assert!(changed_only);
    assert_eq!(
        minute_buckets(&third),
        vec![505, 510],
        "bucket 500 cannot have changed"
    );
    // A minute after the last post of every bucket, one carries every bucket again.
    host.now.set(1_060_000);
    let (full, changed_only) = sync_answered(&mut sync, &host, "pk_live_steady");
    assert!(!changed_only);
    assert_eq!(minute_buckets(&full), vec![500, 505, 510, 530]);
    host.now.set(1_061_000);
    assert!(sync_answered(&mut sync, &host, "pk_live_steady").1);
}

#[test]
fn a_control_service_that_lost_this_envoys_counts_gets_every_bucket_at_once() {
    let host = FakeHost::at(1_000_000);
    let queue = Rc::new(LocalQueue::default());
    let mut sync = sync(7, &queue);
    sync_answered(&mut sync, &host, "pk_live_restart");
    host.now.set(1_010_000);
    grow(&host, SLOTS, SLOTS, 0).unwrap();
    let mut touched = Touched::default();
    touched.insert(admit_one(&host, "pk_live_restart", 1_000).1);
    let call = poll(&mut sync, &host, &mut touched).0.unwrap();
    assert_eq!(minute_buckets(&post_of(&call)), vec![500, 505]);
    host.now.set(1_020_000);
    let lost = br#"{"error":{"code":"CONFLICT","message":"no counts of this proxy"}}"#;
    assert_eq!(
        answer(&mut sync, &host, call.token, Some(409), lost),
        Some(FleetOutcome::AskedForEveryBucket)
    );
    let again = host
        .take_calls()
        .pop()
        .expect("every bucket follows at once");
    assert_eq!(again.header(fleet::BUCKETS_HEADER), None);
    assert_eq!(minute_buckets(&post_of(&again)), vec![500, 505]);
    // A 409 to a post of every bucket is an ordinary failure.
    assert_eq!(
        answer(&mut sync, &host, again.token, Some(409), lost),
        Some(FleetOutcome::Failed(FleetError::Status(409)))
    );
    assert!(host.take_calls().is_empty());
}
