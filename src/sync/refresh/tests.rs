//! The refresh through its runner and `FakeHost`: what it asks for, full loads, deltas, 304s,
//! rejected snapshots, quarantine, paging and long polling. Leases, fencing and takeovers are in
//! `takeover_tests.rs`.

use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::host::{DispatchedCall, FakeHost};
use crate::store::{lookup, read_meta};
use crate::sync::task::Runner;
use keygate_contract::key_hash::hash_key;

pub(super) type Refresher = Runner<Refresh>;

pub(super) fn refresher(me: u64, control: ControlConfig) -> Refresher {
    Runner::new(Refresh::new(me, control.clone(), 64), me, "kc").presenting(&control)
}

pub(super) fn control(extra: &str) -> ControlConfig {
    let json = format!(
        r#"{{"control":{{"cluster":"kc","token":"sync","refresh_interval":"10s","timeout":"2s"{extra}}}}}"#
    );
    Config::parse(json.as_bytes(), &|_| None).unwrap().control
}

pub(super) fn record_json(secret: &str, active: bool) -> String {
    format!(
        r#"{{"id":"id_{secret}","hash":"{}","prefix":"pk_live_","name":"n","environment":"live","active":{active}}}"#,
        hash_key(secret)
    )
}

pub(super) fn page(
    version: u64,
    full: bool,
    since: u64,
    keys: &[String],
    deleted: &[String],
    cursor: Option<&str>,
) -> Vec<u8> {
    let deleted: Vec<String> = deleted.iter().map(|d| format!("\"{d}\"")).collect();
    let cursor = cursor
        .map(|c| format!(r#","next_cursor":"{c}""#))
        .unwrap_or_default();
    format!(
        r#"{{"version":{version},"epoch":"E","full":{full},"since":{since},"keys":[{}],"deleted":[{}]{cursor}}}"#,
        keys.join(","),
        deleted.join(",")
    )
    .into_bytes()
}

/// Ticks: the call the refresher is now waiting for, if it made one, and what happened.
pub(super) fn tick(
    refresher: &mut Refresher,
    host: &FakeHost,
) -> (Option<DispatchedCall>, Vec<Outcome>) {
    let outcomes = refresher.tick(host);
    (awaited(refresher, host), outcomes)
}

/// The call `refresher` waits for among those dispatched since they were last taken.
pub(super) fn awaited(refresher: &Refresher, host: &FakeHost) -> Option<DispatchedCall> {
    host.take_calls()
        .into_iter()
        .rev()
        .find(|call| refresher.awaits(call.token))
}

/// Delivers `status` and `body` as the answer to call `token`: the first outcome, if the
/// refresher was waiting for it.
pub(super) fn answer(
    refresher: &mut Refresher,
    host: &FakeHost,
    token: u32,
    status: Option<u32>,
    body: &[u8],
) -> Option<Outcome> {
    let size = host.respond(status, body);
    refresher.on_response(host, token, size).into_iter().next()
}

/// Claims (or takes the call already made at once, when long polling) and answers; returns the
/// call and the outcome.
pub(super) fn fetch(
    refresher: &mut Refresher,
    host: &FakeHost,
    status: Option<u32>,
    body: &[u8],
) -> (DispatchedCall, Outcome) {
    let call = match awaited(refresher, host) {
        Some(call) => call,
        None => tick(refresher, host).0.expect("a refresh should be due"),
    };
    let outcome = answer(refresher, host, call.token, status, body).expect("an outcome");
    (call, outcome)
}

#[test]
fn first_load_then_delta_then_unchanged() {
    let host = FakeHost::at(1_000_000);
    let mut refresher = refresher(7, control(""));
    let body = page(
        3,
        true,
        0,
        &[record_json("k1", true), record_json("k2", true)],
        &[],
        None,
    );
    let (request, outcome) = fetch(&mut refresher, &host, Some(200), &body);
    assert_eq!(request.path(), "/v1/snapshot?limit=10000");
    assert!(request
        .headers
        .contains(&("authorization".into(), "Bearer sync".into())));
    assert_eq!(
        outcome,
        Outcome::Applied {
            version: 3,
            keys: 2,
            full: true
        }
    );
    let meta = read_meta(&host);
    assert!(meta.loaded());
    assert!(lookup(&host, &hash_key("k1"), meta.generation).is_some());

    // Not due again until the interval (10 s, plus jitter) passes.
    assert_eq!(tick(&mut refresher, &host), (None, vec![]));
    host.now.set(1_000_000 + 11_001);
    let delta = page(
        4,
        false,
        3,
        &[record_json("k3", true)],
        &[hash_key("k1")],
        None,
    );
    let (request, outcome) = fetch(&mut refresher, &host, Some(200), &delta);
    assert_eq!(request.path(), "/v1/snapshot?limit=10000&since=3&epoch=E");
    assert!(request
        .headers
        .contains(&("if-none-match".into(), "\"E-3\"".into())));
    assert_eq!(
        outcome,
        Outcome::Applied {
            version: 4,
            keys: 2,
            full: false
        }
    );
    let meta = read_meta(&host);
    assert!(lookup(&host, &hash_key("k1"), meta.generation).is_none());
    assert!(lookup(&host, &hash_key("k3"), meta.generation).is_some());

    host.now.set(1_000_000 + 30_000);
    let (_, outcome) = fetch(&mut refresher, &host, Some(304), b"");
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(read_meta(&host).last_success_ms, 1_030_000);
}

#[test]
fn a_store_written_in_another_layout_gets_a_full_snapshot() {
    let host = FakeHost::at(1_000_000);
    // What an older filter left in shared data before this VM was loaded in its place.
    store::update_meta(&host, 0, |_| StoreMeta {
        generation: 5,
        version: 9,
        epoch: "E".into(),
        keys: 1,
        last_success_ms: 999_000,
        format: 0,
        ..StoreMeta::default()
    })
    .unwrap();
    let mut refresher = refresher(1, control(""));
    let body = page(9, true, 0, &[record_json("k1", true)], &[], None);
    let (request, outcome) = fetch(&mut refresher, &host, Some(200), &body);
    assert_eq!(
        request.path(),
        "/v1/snapshot?limit=10000",
        "no delta on records it cannot read"
    );
    assert!(matches!(outcome, Outcome::Applied { full: true, .. }));
    assert_eq!(read_meta(&host).format, STORE_FORMAT);
}

#[test]
fn bad_snapshots_are_rejected_whole_and_the_last_good_one_serves() {
    let host = FakeHost::at(5_000);
    let mut refresher = refresher(1, control(""));
    fetch(
        &mut refresher,
        &host,
        Some(200),
        &page(1, true, 0, &[record_json("good", true)], &[], None),
    );
    let before = read_meta(&host);
    let bad_bodies: Vec<Vec<u8>> = vec![
        b"{\"version\":2,\"full\":tr".to_vec(),
        b"<html>".to_vec(),
        page(
            2,
            true,
            0,
            &[record_json("x", true), record_json("x", true)],
            &[],
            None,
        ),
        br#"{"version":2,"full":true,"keys":{"id":"a"}}"#.to_vec(),
        br#"{"version":-2,"full":true,"keys":[]}"#.to_vec(),
        page(2, false, 99, &[], &[], None),
        br#"{"version":2,"epoch":"E&since=0","full":true,"keys":[]}"#.to_vec(),
    ];
    for (i, body) in bad_bodies.iter().enumerate() {
        host.now.set(host.now.get() + 60_000);
        let (_, outcome) = fetch(&mut refresher, &host, Some(200), body);
        assert!(
            matches!(&outcome, Outcome::Failed(e) if e.rejected()),
            "case {i}: {outcome:?}"
        );
        let meta = read_meta(&host);
        assert_eq!(
            (meta.version, meta.generation, meta.keys),
            (before.version, before.generation, before.keys)
        );
        assert!(
            lookup(&host, &hash_key("good"), meta.generation).is_some(),
            "case {i}"
        );
    }
    host.now.set(host.now.get() + 60_000);
    let (_, outcome) = fetch(&mut refresher, &host, Some(500), b"oops");
    assert!(matches!(
        outcome,
        Outcome::Failed(RefreshError::Status(500))
    ));
}

fn record_named(secret: &str, name: &str) -> String {
    format!(
        r#"{{"id":"id_{secret}","hash":"{}","prefix":"pk_live_","name":{},"environment":"live","active":true}}"#,
        hash_key(secret),
        serde_json::to_string(name).unwrap()
    )
}

#[test]
fn a_bad_record_is_quarantined_and_everything_else_applies() {
    let host = FakeHost::at(5_000);
    let mut refresher = refresher(1, control(""));
    let full = page(
        1,
        true,
        0,
        &[
            record_json("revoked", true),
            record_json("bad", true),
            record_json("kept", true),
        ],
        &[],
        None,
    );
    fetch(&mut refresher, &host, Some(200), &full);
    assert!(refresher.job_mut().take_quarantined().is_empty());
    // The delta carries a record the filter refuses, a revocation and a new key.
    host.now.set(100_000);
    let delta = page(
        2,
        false,
        1,
        &[
            record_named("bad", "evil\u{0}name"),
            record_json("new", true),
        ],
        &[hash_key("revoked")],
        None,
    );
    let (_, outcome) = fetch(&mut refresher, &host, Some(200), &delta);
    assert!(
        matches!(outcome, Outcome::Applied { version: 2, .. }),
        "{outcome:?}"
    );
    let meta = read_meta(&host);
    assert!(lookup(&host, &hash_key("new"), meta.generation).is_some());
    assert!(lookup(&host, &hash_key("kept"), meta.generation).is_some());
    assert!(lookup(&host, &hash_key("revoked"), meta.generation).is_none());
    assert!(
        lookup(&host, &hash_key("bad"), meta.generation).is_none(),
        "never the old version of a quarantined record"
    );
    let quarantined = refresher.job_mut().take_quarantined();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].id, "id_bad");
    assert_eq!(quarantined[0].error.field, "keys[0].name");
    // A long Unicode name is no quarantine at all.
    host.now.set(200_000);
    let delta = page(
        3,
        false,
        2,
        &[record_named("bad", &"🔑".repeat(128))],
        &[],
        None,
    );
    fetch(&mut refresher, &host, Some(200), &delta);
    assert!(refresher.job_mut().take_quarantined().is_empty());
    let meta = read_meta(&host);
    assert_eq!(
        lookup(&host, &hash_key("bad"), meta.generation)
            .and_then(|k| k.view().map(|v| v.name.to_string())),
        Some("🔑".repeat(128))
    );
}

#[test]
fn paged_full_snapshot_switches_generation_at_the_end() {
    let host = FakeHost::at(10_000);
    let mut refresher = refresher(1, control(""));
    fetch(
        &mut refresher,
        &host,
        Some(200),
        &page(1, true, 0, &[record_json("old", true)], &[], None),
    );
    let generation = read_meta(&host).generation;
    host.now.set(100_000);
    let (_, outcome) = fetch(
        &mut refresher,
        &host,
        Some(200),
        &page(5, true, 0, &[record_json("a", true)], &[], Some("c1")),
    );
    assert!(matches!(outcome, Outcome::NextPage { .. }), "{outcome:?}");
    let next = awaited(&refresher, &host).expect("the next page's call");
    assert_eq!(
        next.path(),
        "/v1/snapshot?limit=10000&since=1&epoch=E&cursor=c1"
    );
    assert!(!next.headers.iter().any(|(n, _)| n == "if-none-match"));
    // Mid-load: the old snapshot serves whole, the new one is not live yet.
    assert!(lookup(&host, &hash_key("old"), generation).is_some());
    assert!(lookup(&host, &hash_key("a"), generation).is_none());
    let last = page(6, true, 0, &[record_json("b", true)], &[], None);
    let outcome = answer(&mut refresher, &host, next.token, Some(200), &last).unwrap();
    assert_eq!(
        outcome,
        Outcome::Applied {
            version: 5,
            keys: 2,
            full: true
        }
    );
    let meta = read_meta(&host);
    assert!(lookup(&host, &hash_key("old"), meta.generation).is_none());
    assert!(lookup(&host, &hash_key("b"), meta.generation).is_some());
}

#[test]
fn long_poll_asks_to_wait_and_polls_again_at_once() {
    let host = FakeHost::at(10_000);
    let mut refresher = refresher(1, control(r#","long_poll_wait":"30s""#));
    let (first, _) = fetch(
        &mut refresher,
        &host,
        Some(200),
        &page(1, true, 0, &[], &[], None),
    );
    assert!(
        !first.path().contains("wait="),
        "no long poll before the first snapshot"
    );
    let (request, _) = fetch(&mut refresher, &host, Some(304), b"");
    assert_eq!(
        request.path(),
        "/v1/snapshot?limit=10000&since=1&epoch=E&wait=30"
    );
    assert_eq!(request.timeout, Duration::from_secs(32));
    assert!(
        awaited(&refresher, &host).is_some(),
        "the next long poll went out at once"
    );
}
