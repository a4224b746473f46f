//! The per-request flow (`keygate::request`) on the host, through `FakeHost`: what reaches the
//! upstream, every denial's status, body and headers, the client address of an allowlist,
//! fail-open and fail-closed. `request_state.rs` has what requests count and cache. The same
//! flows run end to end through Envoy in `tests/e2e/test_filter.py`; these pin the glue without
//! a Wasm runtime.

mod support;

use keygate::request::Verdict;
use support::*;

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

#[test]
fn a_key_of_the_checksummed_shape_is_refused_on_its_checksum_before_any_lookup() {
    use keygate_contract::key_format::{with_checksum, CHECKSUMMED_LEN, LEGACY_LEN};
    let setup = setup("", true);
    let checksummed = with_checksum(&format!("pk_live_{:0<40}", "Checksummed"));
    assert_eq!(checksummed.len(), CHECKSUMMED_LEN);
    // One character changed, and (to show it is never looked up) a record with its very hash.
    let mistyped = format!("{}x", &checksummed[..checksummed.len() - 1]);
    assert_ne!(mistyped, checksummed);
    // A key issued before checksums: 40 characters after the prefix, nothing to check.
    let legacy = &format!("pk_live_{:0<40}", "Legacy");
    assert_eq!(legacy.len(), LEGACY_LEN);
    let records = [
        record(&checksummed, "key_checksummed", ""),
        record(&mistyped, "key_mistyped", ""),
        record(legacy, "key_legacy", ""),
    ];
    // The next refresh is due a minute on.
    setup.host.now.set(NOW_MS + 60_000);
    apply_delta(&setup, &records.join(","));

    let (verdict, _) = setup.get(&checksummed);
    assert_eq!(verdict, Verdict::Continue);
    let (verdict, _) = setup.get(legacy);
    assert_eq!(verdict, Verdict::Continue);
    assert_eq!(setup.host.metric("keygate_keys_checksum_failed"), 0);

    let (verdict, _) = setup.get(&mistyped);
    assert_eq!(verdict, Verdict::Stop);
    let (status, code, headers) = setup.error();
    assert_eq!((status, code.as_str()), (401, "INVALID_API_KEY"));
    assert!(header_of(&headers, "www-authenticate")
        .unwrap_or_default()
        .contains("invalid_token"));
    assert_eq!(setup.host.metric("keygate_keys_checksum_failed"), 1);
    setup.worker.metrics.flush(&setup.host);
    assert_eq!(
        setup.host.metric("keygate_requests_denied_invalid_api_key"),
        1
    );
}

#[test]
fn a_grpc_call_is_denied_with_a_grpc_status_and_a_readable_message() {
    let setup = setup("", true);
    let (verdict, _) = setup.send(
        "POST",
        "/demo.Echo/Say",
        &[("content-type", "application/grpc"), ("te", "trailers")],
    );
    assert_eq!(verdict, Verdict::Stop);
    let reply = setup.host.reply().expect("a local reply");
    assert_eq!((reply.status, reply.grpc_status), (401, Some(16)));
    assert!(reply.body.starts_with("UNAUTHORIZED: "), "{}", reply.body);
    // Over the limit: RESOURCE_EXHAUSTED, not the UNAVAILABLE that clients retry at once.
    let bearer = format!("Bearer {LIMITED}");
    let headers = [
        ("content-type", "application/grpc+proto"),
        ("authorization", bearer.as_str()),
    ];
    for _ in 0..2 {
        let (verdict, mut filter) = setup.send("POST", "/demo.Echo/Say", &headers);
        assert_eq!(verdict, Verdict::Continue);
        filter.on_stream_end();
    }
    let (verdict, _) = setup.send("POST", "/demo.Echo/Say", &headers);
    assert_eq!(verdict, Verdict::Stop);
    let reply = setup.host.reply().expect("a local reply");
    assert_eq!((reply.status, reply.grpc_status), (429, Some(8)));
    assert!(reply.body.contains("retry after"), "{}", reply.body);
    assert!(header_of(&reply.headers, "grpc-retry-pushback-ms").is_some());
    // A plain HTTP request still gets the JSON body and no gRPC status.
    let (verdict, _) = setup.get(LIMITED);
    assert_eq!(verdict, Verdict::Stop);
    assert_eq!(setup.host.reply().unwrap().grpc_status, None);
}

#[test]
fn a_query_parameter_key_leaves_the_path_even_when_the_request_is_refused() {
    let setup = setup(r#","key_query_param":"api_key""#, true);
    for (key, verdict) in [
        (VALID, Verdict::Continue),
        (INACTIVE, Verdict::Stop),
        ("pk_live_unknown", Verdict::Stop),
        ("bad%20chars", Verdict::Stop),
    ] {
        let path = format!("/v1/realtime?model=x&api_key={key}");
        let (got, _) = setup.send("GET", &path, &[]);
        assert_eq!(got, verdict, "{key}");
        assert_eq!(
            setup.host.request_header(":path").as_deref(),
            Some("/v1/realtime?model=x"),
            "{key}: what the upstream and the access log see"
        );
    }
    // A path without the parameter is left alone (no host call).
    setup.send("GET", "/v1/models?model=x", &[("x-api-key", VALID)]);
    assert_eq!(
        setup.host.request_header(":path").as_deref(),
        Some("/v1/models?model=x")
    );
}
