//! The decision: its checks in their documented order, expiry, scopes, environments, and the
//! error body and challenge.

use super::*;
use crate::policy::extract::Source;
use crate::store::key::StoredKey;
use keygate_contract::snapshot::Limits;

const KEY: &str = "pk_live_abc";

fn config(extra: &str) -> Config {
    let json = format!(
        r#"{{"control":{{"cluster":"c","token":"t"}},
                "routes":[{{"methods":["POST"],"exact":"/v1/jobs","scope":"submit_job"}}]{extra}}}"#
    );
    Config::parse(json.as_bytes(), &|_| None).unwrap()
}

fn key() -> StoredKey {
    StoredKey {
        generation: 1,
        id: "key_1".into(),
        name: "prod".into(),
        team: "t".into(),
        environment: "live".into(),
        prefix: "pk_live_".into(),
        scopes: vec!["check_status".into()],
        allowed_ips: vec!["10.0.0.0/8".parse().unwrap()],
        expires_at: Some(1000),
        active: true,
        limits: Limits::default(),
        quota_exceeded_until: None,
    }
}

fn facts(method: &'static str, path: &'static str, ip: &str, now: i64) -> RequestFacts<'static> {
    RequestFacts {
        method,
        path,
        client_ip: ip.parse().ok(),
        now,
        route: None,
    }
}

/// The decision with the route found as `request.rs` finds it.
fn decide<'k, K: KeyFacts>(
    config: &Config,
    credential: &Credential<'_>,
    record: Option<&'k K>,
    facts: &RequestFacts<'_>,
) -> Result<&'k K, Denial> {
    let facts = RequestFacts {
        route: config.routes.route(facts.method, facts.path),
        ..*facts
    };
    super::decide(config, credential, record, &facts)
}

fn present() -> Credential<'static> {
    Credential::Present {
        key: KEY,
        source: Source::Authorization,
    }
}

fn code(result: Result<&StoredKey, Denial>) -> Option<DenyCode> {
    result.err().map(|d| d.code)
}

#[test]
fn checks_run_in_documented_order() {
    let cfg = config("");
    let ok = facts("GET", "/v1/jobs/1", "10.1.1.1", 999);
    assert_eq!(
        code(decide(&cfg, &Credential::Missing, None, &ok)),
        Some(DenyCode::Unauthorized)
    );
    assert_eq!(
        code(decide(
            &cfg,
            &Credential::Malformed(Malformed::TooLong),
            None,
            &ok
        )),
        Some(DenyCode::InvalidApiKey)
    );
    assert_eq!(
        code(decide(&cfg, &present(), None, &ok)),
        Some(DenyCode::InvalidApiKey)
    );

    let mut everything_wrong = key();
    everything_wrong.active = false;
    everything_wrong.scopes = vec!["other".into()];
    let bad = facts("POST", "/v1/jobs", "192.0.2.1", 5000);
    assert_eq!(
        code(decide(&cfg, &present(), Some(&everything_wrong), &bad)),
        Some(DenyCode::ApiKeyInactive)
    );
    everything_wrong.active = true;
    assert_eq!(
        code(decide(&cfg, &present(), Some(&everything_wrong), &bad)),
        Some(DenyCode::ApiKeyExpired)
    );
    everything_wrong.expires_at = None;
    assert_eq!(
        code(decide(&cfg, &present(), Some(&everything_wrong), &bad)),
        Some(DenyCode::IpNotWhitelisted)
    );
    everything_wrong.allowed_ips.clear();
    assert_eq!(
        code(decide(&cfg, &present(), Some(&everything_wrong), &bad)),
        Some(DenyCode::OperationNotAllowed)
    );
    everything_wrong.scopes.clear();
    assert_eq!(
        code(decide(&cfg, &present(), Some(&everything_wrong), &bad)),
        None
    );
}

#[test]
fn expiry_is_at_or_before_now() {
    let cfg = config("");
    let record = key();
    let at = |now| {
        decide(
            &cfg,
            &present(),
            Some(&record),
            &facts("GET", "/", "10.0.0.1", now),
        )
    };
    assert_eq!(code(at(999)), None);
    assert_eq!(code(at(1000)), Some(DenyCode::ApiKeyExpired));
}

#[test]
fn scope_rules() {
    let cfg = config("");
    let record = key();
    let run = |method, path| {
        decide(
            &cfg,
            &present(),
            Some(&record),
            &facts(method, path, "10.0.0.1", 0),
        )
    };
    let denial = run("POST", "/v1/jobs").unwrap_err();
    assert_eq!(denial.code, DenyCode::OperationNotAllowed);
    assert_eq!(denial.required_scope.as_deref(), Some("submit_job"));
    assert!(run("GET", "/anything").is_ok());
}

#[test]
fn environment_restriction() {
    let cfg = config(r#","allowed_prefixes":["pk_test_"]"#);
    let record = key();
    let denial = decide(
        &cfg,
        &present(),
        Some(&record),
        &facts("GET", "/", "10.0.0.1", 0),
    )
    .unwrap_err();
    assert_eq!(denial.code, DenyCode::InvalidApiKey);
    assert!(
        denial.message.contains("another environment"),
        "{}",
        denial.message
    );
}

#[test]
fn renders_documented_body_and_challenge() {
    let denial = Denial::new(
        DenyCode::InvalidApiKey,
        INVALID_KEY_MESSAGE,
        Some("invalid_token"),
    );
    let reply = render(&denial, "keygate", Some("req-\"1"));
    assert_eq!(reply.status, 401);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], "INVALID_API_KEY");
    assert_eq!(body["error"]["status"], 401);
    assert_eq!(body["error"]["request_id"], "req-\"1");
    assert!(reply
        .headers
        .contains(&("content-type", "application/json".into())));
    let challenge = &reply
        .headers
        .iter()
        .find(|(n, _)| *n == "www-authenticate")
        .unwrap()
        .1;
    assert!(
        challenge.starts_with("Bearer realm=\"keygate\", error=\"invalid_token\""),
        "{challenge}"
    );

    let missing = render(
        &Denial::new(DenyCode::Unauthorized, "none", None),
        "api",
        None,
    );
    assert!(!missing.body.contains("request_id"));
    assert!(missing
        .headers
        .contains(&("www-authenticate", "Bearer realm=\"api\"".into())));

    let limited = render(
        &Denial::rate_limited(7, vec![("x-ratelimit-limit", "5".into())]),
        "api",
        None,
    );
    assert_eq!(limited.status, 429);
    let body: serde_json::Value = serde_json::from_str(&limited.body).unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(body["error"]["retry_after"], 7);
    assert!(limited.headers.contains(&("retry-after", "7".into())));
    assert!(limited.headers.contains(&("x-ratelimit-limit", "5".into())));
    assert!(!limited
        .headers
        .iter()
        .any(|(n, _)| *n == "www-authenticate"));
    assert_eq!(Denial::over_quota(100, 100).retry_after, Some(1));
    assert_eq!(Denial::over_quota(3_700, 100).retry_after, Some(3_600));

    let unavailable = render(&Denial::unavailable(), "api", None);
    assert_eq!(unavailable.status, 503);
    assert!(!unavailable
        .headers
        .iter()
        .any(|(n, _)| *n == "www-authenticate"));
}

#[test]
fn grpc_calls_are_told_by_their_content_type() {
    for grpc in [&b"application/grpc"[..], b"application/grpc+proto"] {
        assert!(is_grpc(Some(grpc)), "{grpc:?}");
    }
    // Envoy's rule exactly: these it answers as plain HTTP, so the JSON error is right.
    for other in [
        &b"application/json"[..],
        b"Application/GRPC",
        b"application/grpc;charset=utf-8",
        b"application/grpc-web",
        b"application/grpcx",
        b"application/grp",
        b"",
    ] {
        assert!(!is_grpc(Some(other)), "{other:?}");
    }
    assert!(!is_grpc(None));
}

#[test]
fn grpc_denials_carry_the_status_a_client_acts_on() {
    let cases = [
        (Denial::new(DenyCode::Unauthorized, "none", None), 16),
        (Denial::new(DenyCode::OperationNotAllowed, "scope", None), 7),
        (
            Denial::rate_limited(12, vec![("x-ratelimit-limit", "5".into())]),
            8,
        ),
        (Denial::over_quota(3_700, 100), 8),
        (Denial::unavailable(), 14),
    ];
    for (denial, grpc) in cases {
        let http = render(&denial, "api", None);
        let reply = render_grpc(&denial, "api", Some("r-1"));
        assert_eq!(reply.grpc_status, Some(grpc), "{:?}", denial.code);
        assert_eq!(http.grpc_status, None);
        assert_eq!(reply.status, http.status, "the same HTTP status underneath");
        assert!(
            reply.body.starts_with(denial.code.as_str()),
            "{}",
            reply.body
        );
        assert!(reply.body.contains(&denial.message));
        assert!(reply.body.ends_with("[request r-1]"), "{}", reply.body);
        assert!(
            !reply.headers.iter().any(|(n, _)| *n == "content-type"),
            "Envoy sets application/grpc"
        );
        // Every header the HTTP answer has (but its content type) is on the gRPC one.
        for header in http
            .headers
            .iter()
            .filter(|(n, _)| *n != "content-type" && *n != "cache-control")
        {
            assert!(reply.headers.contains(header), "{header:?}");
        }
    }
    let limited = render_grpc(&Denial::rate_limited(12, Vec::new()), "api", None);
    assert!(
        limited.body.ends_with("(retry after 12 s)"),
        "{}",
        limited.body
    );
    assert!(limited.headers.contains(&("retry-after", "12".into())));
    assert!(limited
        .headers
        .contains(&("grpc-retry-pushback-ms", "12000".into())));
    let unauthorized = render_grpc(
        &Denial::new(DenyCode::Unauthorized, "none", None),
        "api",
        None,
    );
    assert!(!unauthorized
        .headers
        .iter()
        .any(|(n, _)| *n == "grpc-retry-pushback-ms"));
}

fn token(subject: &str, scope: Option<&str>) -> crate::policy::token::AccessToken {
    crate::policy::token::AccessToken {
        key_digest: [7; 32],
        subject: subject.into(),
        scope: scope.map(str::to_string),
    }
}

#[test]
fn a_token_is_worth_its_key_narrowed_by_its_scopes() {
    let cfg = config(r#","default_scope":"check_status""#);
    let ok = facts("GET", "/v1/jobs/1", "10.1.1.1", 999);
    let record = key();
    let unscoped = token("key_1", None);
    assert!(decide(&cfg, &Credential::Token(&unscoped), Some(&record), &ok).is_ok());
    let scoped = token("key_1", Some("check_status list_models"));
    assert!(decide(&cfg, &Credential::Token(&scoped), Some(&record), &ok).is_ok());
    // The key's own checks hold for its tokens: expiry, allowlist, active.
    let expired = facts("GET", "/v1/jobs/1", "10.1.1.1", 1000);
    assert_eq!(
        code(decide(
            &cfg,
            &Credential::Token(&scoped),
            Some(&record),
            &expired
        )),
        Some(DenyCode::ApiKeyExpired)
    );
    let elsewhere = facts("GET", "/v1/jobs/1", "192.0.2.1", 999);
    assert_eq!(
        code(decide(
            &cfg,
            &Credential::Token(&scoped),
            Some(&record),
            &elsewhere
        )),
        Some(DenyCode::IpNotWhitelisted)
    );
    let inactive = StoredKey {
        active: false,
        ..key()
    };
    assert_eq!(
        code(decide(
            &cfg,
            &Credential::Token(&scoped),
            Some(&inactive),
            &ok
        )),
        Some(DenyCode::ApiKeyInactive)
    );
    // Narrower than the key: refused as insufficient_scope, naming the token.
    let narrowed = token("key_1", Some("list_models"));
    let denial = decide(&cfg, &Credential::Token(&narrowed), Some(&record), &ok).unwrap_err();
    assert_eq!(denial.code, DenyCode::OperationNotAllowed);
    assert_eq!(denial.bearer_error, Some("insufficient_scope"));
    assert!(
        denial.message.contains("access token"),
        "{}",
        denial.message
    );
    // A token scope the key lacks grants nothing.
    let widened = token("key_1", Some("submit_job"));
    let post = facts("POST", "/v1/jobs", "10.1.1.1", 999);
    assert_eq!(
        code(decide(
            &cfg,
            &Credential::Token(&widened),
            Some(&record),
            &post
        )),
        Some(DenyCode::OperationNotAllowed)
    );
}

#[test]
fn a_token_whose_key_is_gone_or_another_is_invalid() {
    let cfg = config(r#","default_scope":"check_status""#);
    let ok = facts("GET", "/v1/jobs/1", "10.1.1.1", 999);
    let record = key();
    let other = token("key_2", None);
    for (credential, record) in [
        (Credential::Token(&other), Some(&record)),
        (Credential::Token(&other), None),
        (Credential::UnusableToken, Some(&record)),
    ] {
        let denial = decide(&cfg, &credential, record, &ok).unwrap_err();
        assert_eq!(denial.code, DenyCode::InvalidApiKey);
        assert_eq!(denial.bearer_error, Some("invalid_token"));
    }
    // A refused JWT left in the header is a token, not a key.
    let refused = Credential::Present {
        key: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJrIn0.c2ln",
        source: Source::Authorization,
    };
    let denial = decide(&cfg, &refused, Some(&record), &ok).unwrap_err();
    assert_eq!(denial.message, INVALID_TOKEN_MESSAGE);
}

#[test]
fn a_token_meets_allowed_prefixes_through_its_keys_environment() {
    let cfg = config(r#","default_scope":"check_status","allowed_prefixes":["pk_test_"]"#);
    let ok = facts("GET", "/v1/jobs/1", "10.1.1.1", 999);
    let live = key();
    let test = StoredKey {
        environment: "test".into(),
        ..key()
    };
    let unscoped = token("key_1", None);
    assert_eq!(
        code(decide(
            &cfg,
            &Credential::Token(&unscoped),
            Some(&live),
            &ok
        )),
        Some(DenyCode::InvalidApiKey)
    );
    assert!(decide(&cfg, &Credential::Token(&unscoped), Some(&test), &ok).is_ok());
}
