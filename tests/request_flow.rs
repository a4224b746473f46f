//! The per-request flow (`keygate::request`) on the host, through `FakeHost`: what reaches the
//! upstream, every denial's status, body and headers, fail-open and fail-closed, a limited key
//! (headers, 429, the in-flight place given back at stream end or expired after a lost
//! `on_log`), and the usage tally. The same flows run end to end through Envoy in
//! `tests/e2e/test_filter.py`; these pin the glue without a Wasm runtime.

use std::rc::Rc;

use keygate::config::Config;
use keygate::host::FakeHost;
use keygate::metrics::Metrics;
use keygate::request::{RequestFilter, Verdict, Worker};
use keygate::sync::refresh::{Outcome, Refresh};
use keygate::sync::task::Runner;
use keygate_contract::key_hash::hash_key;

const NOW_MS: u64 = 1_800_000_000_000;
const VALID: &str = "pk_live_valid000000000000000000000000000000";
const SCOPED: &str = "pk_live_scoped00000000000000000000000000000";
const INACTIVE: &str = "pk_live_inactive000000000000000000000000000";
const EXPIRED: &str = "pk_live_expired0000000000000000000000000000";
const LOCKED: &str = "pk_live_locked00000000000000000000000000000";
const LIMITED: &str = "pk_live_limited0000000000000000000000000000";
const ONE_AT_A_TIME: &str = "pk_live_oneatatime0000000000000000000000000";
const OVER_QUOTA: &str = "pk_live_overquota00000000000000000000000000";

fn config(extra: &str) -> Config {
    let json = format!(
        r#"{{"control":{{"cluster":"kc","token":"sync"}},"key_header":"x-api-key",
            "routes":[{{"methods":["POST"],"exact":"/v1/jobs","scope":"submit_job"}}],
            "rate_limits":{{"in_flight_expiry":"7s"}}{extra}}}"#
    );
    Config::parse(json.as_bytes(), &|_| None).unwrap()
}

fn record(secret: &str, id: &str, fields: &str) -> String {
    format!(
        r#"{{"id":"{id}","hash":"{}","prefix":"pk_live_","name":"name of {id}","team":"acme","environment":"live","active":true{fields}}}"#,
        hash_key(secret)
    )
}

/// Loads the keys into the host's store the way the refresh does.
fn load(host: &FakeHost, config: &Config) {
    let keys = [
        record(VALID, "key_valid", ""),
        record(SCOPED, "key_scoped", r#","scopes":["list_models"]"#),
        record(INACTIVE, "key_inactive", "").replace(r#""active":true"#, r#""active":false"#),
        record(
            EXPIRED,
            "key_expired",
            r#","expires_at":"2020-01-01T00:00:00Z""#,
        ),
        record(LOCKED, "key_locked", r#","allowed_ips":["10.0.0.0/8"]"#),
        record(LIMITED, "key_limited", r#","limits":{"per_minute":2}"#),
        record(ONE_AT_A_TIME, "key_one", r#","limits":{"concurrent":1}"#),
        record(
            OVER_QUOTA,
            "key_quota",
            r#","quota_exceeded_until":"2099-01-01T00:00:00Z""#,
        ),
    ];
    let body = format!(
        r#"{{"version":1,"epoch":"E","full":true,"keys":[{}]}}"#,
        keys.join(",")
    );
    let outcome = refresh(host, config, 1, &body);
    assert!(
        matches!(outcome, Outcome::Applied { keys: 8, .. }),
        "{outcome:?}"
    );
}

/// A refresh by VM `me`, answered with `body`: its outcome.
fn refresh(host: &FakeHost, config: &Config, me: u64, body: &str) -> Outcome {
    let mut refresher = Runner::new(Refresh::new(me, config.control.clone(), 64), me, "kc");
    refresher.tick(host);
    let call = host.take_calls().pop().expect("a refresh is due");
    let size = host.respond(Some(200), body.as_bytes());
    refresher.on_response(host, call.token, size).remove(0)
}

struct Setup {
    host: FakeHost,
    worker: Rc<Worker>,
}

fn setup(extra: &str, loaded: bool) -> Setup {
    let host = FakeHost::at(NOW_MS);
    let config = config(extra);
    if loaded {
        load(&host, &config);
    }
    let metrics = Metrics::define(&host);
    let worker = Rc::new(Worker::new(config, metrics));
    Setup { host, worker }
}

impl Setup {
    fn filter(&self) -> RequestFilter<&FakeHost> {
        RequestFilter::new(7, Rc::clone(&self.worker), &self.host)
    }

    /// Sends one request; returns the verdict and the filter (for the response and stream end).
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (Verdict, RequestFilter<&FakeHost>) {
        let mut all = vec![(":method", method), (":path", path), (":authority", "api")];
        all.extend_from_slice(headers);
        self.host.request(&all);
        let mut filter = self.filter();
        let verdict = filter.on_request_headers();
        (verdict, filter)
    }

    fn get(&self, key: &str) -> (Verdict, RequestFilter<&FakeHost>) {
        let bearer = format!("Bearer {key}");
        self.send("GET", "/v1/models", &[("authorization", bearer.as_str())])
    }

    /// The error answer sent for the current request: (status, code, all headers).
    fn error(&self) -> (u32, String, Vec<(String, String)>) {
        let reply = self.host.reply().expect("a local reply");
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["status"], reply.status);
        let header = |name: &str| reply.headers.iter().any(|(n, _)| n == name);
        assert!(header("content-type"));
        (
            reply.status,
            body["error"]["code"].as_str().unwrap().to_string(),
            reply.headers,
        )
    }
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn an_allowed_request_carries_identity_and_loses_credentials_and_spoofed_headers() {
    let setup = setup("", true);
    let (verdict, _) = setup.send(
        "GET",
        "/v1/models",
        &[
            ("authorization", &format!("Bearer {VALID}")),
            ("x-keygate-key-id", "key_forged"),
            ("x-keygate-admin", "true"),
            ("x-request-id", "req-1"),
        ],
    );
    assert_eq!(verdict, Verdict::Continue);
    let host = &setup.host;
    assert_eq!(host.reply(), None);
    assert_eq!(
        host.request_header("x-keygate-key-id").as_deref(),
        Some("key_valid")
    );
    assert_eq!(
        host.request_header("x-keygate-key-name").as_deref(),
        Some("name of key_valid")
    );
    assert_eq!(
        host.request_header("x-keygate-team").as_deref(),
        Some("acme")
    );
    assert_eq!(
        host.request_header("x-keygate-environment").as_deref(),
        Some("live")
    );
    assert_eq!(host.request_header("x-keygate-scopes").as_deref(), Some(""));
    assert_eq!(
        host.request_header("x-keygate-admin"),
        None,
        "spoofed header removed"
    );
    assert_eq!(
        host.request_header("authorization"),
        None,
        "credential removed"
    );
    assert_eq!(
        host.property_value(&["keygate_key_id"]),
        None,
        "no filter-state write unless key_id_property is on"
    );
    assert_eq!(
        host.metric("keygate_requests_allowed"),
        0,
        "counted in the VM until the tick"
    );
    setup.worker.metrics.flush(host);
    assert_eq!(host.metric("keygate_requests_allowed"), 1);
}

#[test]
fn key_id_property_sets_the_filter_state_when_asked_for() {
    let setup = setup(r#","key_id_property":true"#, true);
    let (verdict, _) = setup.get(VALID);
    assert_eq!(verdict, Verdict::Continue);
    assert_eq!(
        setup.host.property_value(&["keygate_key_id"]).as_deref(),
        Some("key_valid".as_bytes())
    );
}

#[test]
fn the_key_header_is_stripped_too_unless_credentials_are_forwarded() {
    let setup = setup("", true);
    setup.send("GET", "/v1/models", &[("x-api-key", VALID)]);
    assert_eq!(setup.host.request_header("x-api-key"), None);
    let forwarding = self::setup(r#","forward_credentials":true"#, true);
    forwarding.send("GET", "/v1/models", &[("x-api-key", VALID)]);
    assert_eq!(
        forwarding.host.request_header("x-api-key").as_deref(),
        Some(VALID)
    );
}

/// Request headers, method, path → status, code, a part of `WWW-Authenticate`.
type DenialCase<'a> = (
    &'a [(&'a str, &'a str)],
    &'a str,
    &'a str,
    u32,
    &'a str,
    Option<&'a str>,
);

#[test]
fn every_denial_answers_with_its_documented_status_code_and_challenge() {
    let setup = setup("", true);
    let cases: [DenialCase; 8] = [
        (
            &[],
            "GET",
            "/v1/models",
            401,
            "UNAUTHORIZED",
            Some("Bearer realm=\"keygate\""),
        ),
        (
            &[("authorization", "Bearer pk_live_unknown")],
            "GET",
            "/v1/models",
            401,
            "INVALID_API_KEY",
            Some("error=\"invalid_token\""),
        ),
        (
            &[("authorization", "Basic abc")],
            "GET",
            "/v1/models",
            401,
            "INVALID_API_KEY",
            Some("error=\"invalid_request\""),
        ),
        (
            &[("x-api-key", INACTIVE)],
            "GET",
            "/v1/models",
            401,
            "API_KEY_INACTIVE",
            None,
        ),
        (
            &[("x-api-key", EXPIRED)],
            "GET",
            "/v1/models",
            401,
            "API_KEY_EXPIRED",
            None,
        ),
        (
            &[("x-api-key", LOCKED)],
            "GET",
            "/v1/models",
            403,
            "IP_NOT_WHITELISTED",
            None,
        ),
        (
            &[("x-api-key", SCOPED)],
            "POST",
            "/v1/jobs;x",
            403,
            "OPERATION_NOT_ALLOWED",
            Some("scope=\"submit_job\""),
        ),
        (
            &[("x-api-key", OVER_QUOTA)],
            "GET",
            "/v1/models",
            429,
            "QUOTA_EXCEEDED",
            None,
        ),
    ];
    setup
        .host
        .set_peer(&["source", "address"], "192.0.2.1:5555");
    for (headers, method, path, status, code, challenge) in cases {
        let (verdict, _) = setup.send(method, path, headers);
        assert_eq!(verdict, Verdict::Stop, "{code}");
        let (got_status, got_code, reply_headers) = setup.error();
        assert_eq!((got_status, got_code.as_str()), (status, code));
        if let Some(challenge) = challenge {
            let value = header_of(&reply_headers, "www-authenticate").unwrap_or_default();
            assert!(value.contains(challenge), "{code}: {value}");
        }
        // A denied request never reaches the upstream with an identity.
        assert_eq!(
            setup.host.request_header("x-keygate-key-id"),
            None,
            "{code}"
        );
        setup.worker.metrics.flush(&setup.host);
        let metric = format!("keygate_requests_denied_{}", code.to_ascii_lowercase());
        assert!(setup.host.metric(&metric) >= 1, "{metric}");
    }
    let (_, _, headers) = setup.error();
    assert!(
        header_of(&headers, "retry-after").is_some(),
        "quota denial tells when"
    );
}

#[test]
fn the_allowlisted_client_address_comes_from_the_peer() {
    let setup = setup("", true);
    setup.host.set_peer(&["source", "address"], "10.1.2.3:4444");
    assert_eq!(
        setup.send("GET", "/v1/models", &[("x-api-key", LOCKED)]).0,
        Verdict::Continue
    );
    setup
        .host
        .set_peer(&["source", "address"], "[::ffff:10.9.9.9]:4444");
    assert_eq!(
        setup.send("GET", "/v1/models", &[("x-api-key", LOCKED)]).0,
        Verdict::Continue
    );
}

#[test]
fn without_a_snapshot_closed_refuses_and_open_passes_marked() {
    let closed = setup("", false);
    assert_eq!(closed.get(VALID).0, Verdict::Stop);
    assert_eq!(closed.error().1, "AUTH_UNAVAILABLE");
    assert_eq!(closed.error().0, 503);

    let open = setup(r#","fail_mode":"open""#, false);
    assert_eq!(open.get(VALID).0, Verdict::Continue);
    assert_eq!(
        open.host.request_header("x-keygate-fail-open").as_deref(),
        Some("true")
    );
    assert_eq!(open.host.request_header("authorization"), None);
    assert_eq!(open.host.request_header("x-keygate-key-id"), None);
    assert_eq!(open.host.metric("keygate_requests_fail_open"), 1);
}

#[test]
fn a_limited_key_gets_rate_limit_headers_then_429() {
    let setup = setup("", true);
    for remaining in ["1", "0"] {
        let (verdict, mut filter) = setup.send("GET", "/v1/models", &[("x-api-key", LIMITED)]);
        assert_eq!(verdict, Verdict::Continue);
        filter.on_response_headers();
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
    filter.on_response_headers();
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
    let batch = setup.worker.tally.borrow_mut().take_batch().expect("usage");
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

/// Applies one snapshot answer (a full page or a delta) through a refresher, as the lease holder.
fn apply(setup: &Setup, body: &str) {
    let outcome = refresh(&setup.host, &setup.worker.config, 9, body);
    assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
}

/// Applies a delta on top of the loaded snapshot that upserts `record`.
fn apply_delta(setup: &Setup, record: &str) {
    let since = keygate::store::read_meta(&setup.host).version;
    apply(
        setup,
        &format!(
            r#"{{"version":{},"epoch":"E","full":false,"since":{since},"keys":[{record}]}}"#,
            since + 1
        ),
    );
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

#[test]
fn a_key_without_a_team_forwards_no_team_header_even_a_spoofed_one() {
    let setup = setup("", true);
    let loner = "pk_live_loner000000000000000000000000000000";
    let record = record(loner, "key_loner", "").replace(r#""team":"acme","#, "");
    setup.host.now.set(NOW_MS + 60_000);
    apply_delta(&setup, &record);
    let bearer = format!("Bearer {loner}");
    let (verdict, _) = setup.send(
        "GET",
        "/v1/models",
        &[
            ("authorization", bearer.as_str()),
            ("x-keygate-team", "admins"),
        ],
    );
    assert_eq!(verdict, Verdict::Continue);
    assert_eq!(setup.host.request_header("x-keygate-team"), None);
    assert_eq!(
        setup.host.request_header("x-keygate-key-id").as_deref(),
        Some("key_loner")
    );
}
