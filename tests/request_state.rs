//! What requests leave behind and find, on the host through `FakeHost`: a limited key's
//! headers and 429, the in-flight place given back at stream end or expired after a lost
//! `on_log`, the usage tally, and how soon a worker's cached view and recent keys see a change.

mod support;

use std::collections::BTreeMap;

use keygate::host::{FakeHost, Host};
use keygate::request::{RequestFilter, Verdict};
use keygate::sync::batch::{UsageBatch, UsageReport};
use support::*;

/// What the worker tallied so far, taken as a usage batch.
fn take_usage(setup: &Setup) -> UsageBatch {
    setup
        .worker
        .gathered
        .tally()
        .take_batch(&setup.worker.config.routes)
        .expect("usage")
}

/// `batch`'s report of key `id`.
fn report_of<'a>(batch: &'a UsageBatch, id: &str) -> &'a UsageReport {
    batch
        .reports
        .iter()
        .find(|report| report.key_id == id)
        .expect(id)
}

#[test]
fn a_limited_key_gets_rate_limit_headers_then_429() {
    let setup = setup("", true);
    for remaining in ["1", "0"] {
        let (verdict, mut filter) = setup.send("GET", "/v1/models", &[("x-api-key", LIMITED)]);
        assert_eq!(verdict, Verdict::Continue);
        filter.on_response_headers(true);
        assert_eq!(
            setup.host.response_header("x-ratelimit-limit").as_deref(),
            Some("2")
        );
        assert_eq!(
            setup
                .host
                .response_header("x-ratelimit-remaining")
                .as_deref(),
            Some(remaining)
        );
        assert!(setup.host.response_header("ratelimit-policy").is_some());
        filter.on_stream_end();
    }
    let (verdict, mut filter) = setup.send("GET", "/v1/models", &[("x-api-key", LIMITED)]);
    assert_eq!(verdict, Verdict::Stop);
    let (status, code, headers) = setup.error();
    assert_eq!((status, code.as_str()), (429, "RATE_LIMIT_EXCEEDED"));
    assert!(header_of(&headers, "retry-after").is_some());
    assert_eq!(header_of(&headers, "x-ratelimit-remaining"), Some("0"));
    // A locally answered request adds nothing to a response it never gets.
    filter.on_response_headers(true);
    assert_eq!(setup.host.response_header("x-ratelimit-limit"), None);
}

#[test]
fn the_in_flight_place_is_given_back_at_stream_end_or_expires_after_a_lost_on_log() {
    let setup = setup("", true);
    let (verdict, mut first) = setup.send("GET", "/v1/models", &[("x-api-key", ONE_AT_A_TIME)]);
    assert_eq!(verdict, Verdict::Continue);
    let (verdict, _) = setup.send("GET", "/v1/models", &[("x-api-key", ONE_AT_A_TIME)]);
    assert_eq!(verdict, Verdict::Stop);
    assert_eq!(setup.error().1, "CONCURRENCY_LIMIT_EXCEEDED");
    first.on_stream_end();
    first.on_stream_end(); // a second end gives nothing back twice
    let (verdict, lost) = setup.send("GET", "/v1/models", &[("x-api-key", ONE_AT_A_TIME)]);
    assert_eq!(verdict, Verdict::Continue);
    // This request's VM dies: its on_log never runs.
    drop(lost);
    assert_eq!(
        setup
            .send("GET", "/v1/models", &[("x-api-key", ONE_AT_A_TIME)])
            .0,
        Verdict::Stop
    );
    // The place expires with in_flight_expiry (7 s here, plus at most one bucket).
    setup.host.now.set(NOW_MS + 8_001);
    assert_eq!(
        setup
            .send("GET", "/v1/models", &[("x-api-key", ONE_AT_A_TIME)])
            .0,
        Verdict::Continue
    );
}

#[test]
fn usage_is_tallied_per_key_with_each_denial_code() {
    let setup = setup("", true);
    setup.get(VALID);
    setup.get(VALID);
    setup.send("GET", "/v1/models", &[("x-api-key", INACTIVE)]);
    setup.send(
        "GET",
        "/v1/models",
        &[("authorization", "Bearer pk_live_nobody")],
    );
    let batch = take_usage(&setup);
    let report = |id: &str| batch.reports.iter().find(|r| r.key_id == id).cloned();
    assert_eq!(report("key_valid").map(|r| r.allowed), Some(2));
    let inactive = report("key_inactive").expect("denials of a known key are counted");
    assert_eq!(
        (inactive.allowed, inactive.denied.get("API_KEY_INACTIVE")),
        (0, Some(&1))
    );
    assert_eq!(
        batch.reports.len(),
        2,
        "an unknown key has no id to count under"
    );
}

/// Ends `filter`'s stream `after_ms` after it started: the response headers with `status`
/// (none: never), its body to the end when `complete`, and Envoy's response `flags`.
fn end(
    setup: &Setup,
    filter: &mut RequestFilter<&FakeHost>,
    status: Option<u32>,
    complete: bool,
    flags: u64,
    after_ms: u64,
) {
    if let Some(status) = status {
        setup
            .host
            .set_response_header(":status", &status.to_string());
        filter.on_response_headers(false);
        filter.on_response_data(complete);
    }
    setup
        .host
        .put_property(&["response", "flags"], &flags.to_le_bytes());
    setup.host.now.set(setup.host.now.get() + after_ms);
    filter.on_stream_end();
}

#[test]
fn without_the_response_detail_requests_count_and_the_log_phase_does_nothing() {
    let setup = setup(r#","usage":{"response_detail":false}"#, true);
    let (_, mut failed) = setup.get(VALID);
    end(&setup, &mut failed, Some(503), true, 0, 20);
    let batch = take_usage(&setup);
    let valid = report_of(&batch, "key_valid");
    assert_eq!(valid.allowed, 1);
    assert!(valid.upstream.is_empty() && valid.latency_buckets.is_empty());
    assert!(valid.events.is_empty(), "no 5xx event without the detail");
    // The stream's end still gives back a concurrency place.
    let (verdict, mut first) = setup.send("GET", "/v1/models", &[("x-api-key", ONE_AT_A_TIME)]);
    assert_eq!(verdict, Verdict::Continue);
    let held = setup.send("GET", "/v1/models", &[("x-api-key", ONE_AT_A_TIME)]);
    assert_eq!(held.0, Verdict::Stop);
    first.on_stream_end();
    let again = setup.send("GET", "/v1/models", &[("x-api-key", ONE_AT_A_TIME)]);
    assert_eq!(again.0, Verdict::Continue);
}

#[test]
fn upstream_classes_durations_routes_and_events_are_tallied() {
    let setup = setup("", true);
    setup
        .host
        .set_peer(&["source", "address"], "192.0.2.7:5555");
    let (_, mut ok) = setup.get(VALID);
    end(&setup, &mut ok, Some(200), true, 0, 300);
    let (_, mut failed) = setup.send(
        "POST",
        "/v1/jobs?secret=no",
        &[("x-api-key", VALID), ("x-request-id", "req-503")],
    );
    end(&setup, &mut failed, Some(503), true, 0, 20);
    let (_, mut hung_up) = setup.get(VALID);
    end(&setup, &mut hung_up, Some(200), false, 0x4000, 5);
    // Envoy's own 504 after an upstream timeout (flag UT): no answer from the upstream.
    let (_, mut timed_out) = setup.get(VALID);
    end(&setup, &mut timed_out, Some(504), true, 0x4, 1);
    setup.send(
        "GET",
        "/v1/models",
        &[("x-api-key", INACTIVE), ("x-request-id", "req-401")],
    );
    let batch = take_usage(&setup);
    let valid = report_of(&batch, "key_valid");
    assert_eq!(valid.allowed, 4);
    assert_eq!(
        valid.upstream,
        BTreeMap::from([("2xx".into(), 1), ("5xx".into(), 1), ("none".into(), 2)])
    );
    let p50 = keygate_contract::latency::quantile(&valid.latency_buckets, 0.5).unwrap();
    let max = keygate_contract::latency::quantile(&valid.latency_buckets, 1.0).unwrap();
    assert_eq!(p50, 5.0, "of 300, 20, 5 and 1 ms");
    assert!((max - 300.0).abs() <= 300.0 / 16.0, "{max}");
    // Addresses are sampled: the key's first request of the hour, then one in 16.
    assert_eq!(valid.top_ips, BTreeMap::from([("192.0.2.7".into(), 1)]));
    assert_eq!(
        keygate_contract::ip_sketch::estimate(valid.ip_sketch.clone()),
        1
    );
    assert_eq!(valid.routes["other"].allowed, 3);
    assert_eq!(valid.routes["submit_job"].allowed, 1);
    let outcomes: Vec<(&str, u32, &str)> = valid
        .events
        .iter()
        .map(|e| (e.outcome.as_str(), e.status, e.path.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("5xx", 503, "/v1/jobs"),
            ("none", 200, "/v1/models"),
            ("none", 504, "/v1/models")
        ]
    );
    assert_eq!(valid.events[0].request_id.as_deref(), Some("req-503"));
    assert_eq!(valid.events[0].method, "POST");
    assert_eq!(valid.events[0].client_ip.as_deref(), Some("192.0.2.7"));
    let inactive = report_of(&batch, "key_inactive");
    assert_eq!(inactive.routes["other"].denied["API_KEY_INACTIVE"], 1);
    let denial = &inactive.events[0];
    assert_eq!(
        (
            denial.outcome.as_str(),
            denial.status,
            denial.request_id.as_deref()
        ),
        ("API_KEY_INACTIVE", 401, Some("req-401"))
    );
    assert_eq!(denial.client_ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(
        inactive.top_ips["192.0.2.7"], 1,
        "denials count their address too"
    );
    assert!(inactive.upstream.is_empty() && inactive.latency_buckets.is_empty());
}

#[test]
fn events_are_bounded_per_key_and_the_rest_counted() {
    let setup = setup("", true);
    for _ in 0..25 {
        setup.send("GET", "/v1/models", &[("x-api-key", INACTIVE)]);
    }
    let batch = take_usage(&setup);
    let report = &batch.reports[0];
    assert_eq!(report.denied["API_KEY_INACTIVE"], 25);
    assert_eq!((report.events.len(), report.events_dropped), (20, 5));
}

#[test]
fn a_change_reaches_a_worker_within_the_view_ttl_and_a_new_key_at_once() {
    let setup = setup("", true);
    assert_eq!(setup.get(VALID).0, Verdict::Continue);
    assert_eq!(setup.get(SCOPED).0, Verdict::Continue);
    // A key this worker has just served is read from its recent keys for up to RECENT_KEY_TTL_MS: a
    // revocation (a delta in the live shards) reaches it within that, and not before.
    setup.host.now.set(NOW_MS + 60_000);
    assert_eq!(setup.get(VALID).0, Verdict::Continue);
    let revoked = record(VALID, "key_valid", "").replace(r#""active":true"#, r#""active":false"#);
    apply_delta(&setup, &revoked);
    assert_eq!(
        setup.get(VALID).0,
        Verdict::Continue,
        "within the TTL: the record it read"
    );
    setup
        .host
        .now
        .set(NOW_MS + 60_000 + keygate::request::RECENT_KEY_TTL_MS);
    assert_eq!(setup.get(VALID).0, Verdict::Stop, "after it: revoked");
    // A key that was not found is not cached: once its delta is written, it works.
    setup.host.now.set(NOW_MS + 90_000);
    let fresh = "pk_live_fresh000000000000000000000000000000";
    assert_eq!(setup.get(fresh).0, Verdict::Stop);
    apply_delta(&setup, &record(fresh, "key_fresh", ""));
    assert_eq!(setup.get(fresh).0, Verdict::Continue);
    // A new full snapshot (another epoch) without SCOPED: this worker serves its cached view
    // until it is VIEW_TTL_MS old, then the new one.
    setup.host.now.set(NOW_MS + 120_000);
    assert_eq!(setup.get(SCOPED).0, Verdict::Continue);
    let only_valid = record(VALID, "key_valid", "");
    apply(
        &setup,
        &format!(r#"{{"version":1,"epoch":"F","full":true,"keys":[{only_valid}]}}"#),
    );
    assert_eq!(
        setup.get(SCOPED).0,
        Verdict::Continue,
        "within the TTL: the old view"
    );
    setup
        .host
        .now
        .set(NOW_MS + 120_000 + keygate::request::VIEW_TTL_MS);
    assert_eq!(
        setup.get(SCOPED).0,
        Verdict::Stop,
        "after it: the new snapshot"
    );
    assert_eq!(setup.get(VALID).0, Verdict::Continue);
}
