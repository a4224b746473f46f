use super::*;
use crate::domain::keys::MintedKey;
use crate::domain::keys::StoredKey;
use crate::domain::plans::{Environment, LimitOverrides, Plan};
use crate::domain::usage_range::{Bucket, Counts};
use crate::wire::views::KeyView;
use serde_json::{json, Value};

const BASE_URL: &str = "http://127.0.0.1:8082";
const SECRET: &str = "pk_test_0123456789abcdefghijABCDEFGHIJ0123xyWXYZ";

fn call(method: &'static str, path: &'static str) -> Call<'static> {
    Call {
        base_url: BASE_URL,
        method,
        path,
    }
}

fn answer(status: u16, media_type: Option<&str>, body: &str) -> Answer {
    Answer {
        status,
        media_type: media_type.map(str::to_string),
        body: body.as_bytes().to_vec(),
    }
}

fn json_answer(status: u16, body: &Value) -> Answer {
    answer(status, Some("application/json"), &body.to_string())
}

fn stored_key() -> StoredKey {
    StoredKey {
        seq: 1,
        id: "key_abc".into(),
        hash: "00".repeat(32),
        prefix: "pk_test_".into(),
        last4: "WXYZ".into(),
        name: "ci".into(),
        environment: Environment::Test,
        team: "".into(),
        scopes: vec!["submit_job".into()],
        allowed_ips: vec![],
        expires_at: crate::domain::clock::parse("2030-01-01T00:00:00Z"),
        active: true,
        plan: Plan::Pro,
        plan_limits: crate::domain::plans::seeded_plans()[1].limits,
        limits: LimitOverrides {
            per_minute: Some(7),
            per_month: Some(100),
            ..LimitOverrides::default()
        },
        created_at: crate::domain::clock::parse("2026-01-01T00:00:00Z").unwrap(),
        updated_at: crate::domain::clock::parse("2026-01-02T00:00:00Z").unwrap(),
        rotated_from: None,
        deleted: false,
        updated_version: 1,
        quota_exceeded_until: None,
        last_used_at: None,
        leak: None,
    }
}

fn served_new_key() -> Value {
    let minted = MintedKey {
        key: stored_key(),
        secret: SECRET.into(),
    };
    serde_json::to_value(KeyView::from(minted)).unwrap()
}

fn served_key() -> Value {
    serde_json::to_value(KeyView::from(stored_key())).unwrap()
}

#[test]
fn what_the_service_serves_reads_back_unchanged() {
    for served in [served_key(), served_new_key()] {
        let key: Key = serde_json::from_value(served.clone()).unwrap();
        assert_eq!(serde_json::to_value(&key).unwrap(), served);
    }
    let counts = Counts {
        allowed: 8,
        denied: std::collections::BTreeMap::from([("RATE_LIMIT_EXCEEDED".to_string(), 2)]),
        total: 10,
        ..Counts::default()
    };
    let served = json!({"key_id": "key_abc", "granularity": "day",
        "from": "2026-11-22T00:00:00Z", "to": "2026-11-24T00:00:00Z",
        "buckets": [Bucket { start: "2026-11-23T00:00:00Z".into(), counts: counts.clone() }],
        "totals": counts});
    let report: UsageReport = serde_json::from_value(served.clone()).unwrap();
    assert_eq!(serde_json::to_value(&report).unwrap(), served);
    assert_eq!(report.buckets[0].counts.denied["RATE_LIMIT_EXCEEDED"], 2);
}

#[test]
fn keygate_success_answers_are_read() {
    let new_key: NewKey = read(
        call("POST", "/v1/keys"),
        &json_answer(201, &served_new_key()),
    )
    .unwrap();
    assert_eq!(
        (new_key.key.id.as_str(), new_key.secret.as_str()),
        ("key_abc", SECRET)
    );
    let key: Key = read(
        call("GET", "/v1/keys/key_abc"),
        &json_answer(200, &served_key()),
    )
    .unwrap();
    assert_eq!(key.effective_limits.enforced_by_proxy.per_minute, Some(7));
    let page = json!({"keys": [served_key()], "next_cursor": null});
    let page: KeyPage = read(call("GET", "/v1/keys"), &json_answer(200, &page)).unwrap();
    assert_eq!(page.keys.len(), 1);
    let charset = answer(
        200,
        Some("application/json"),
        r#"{"keys":[],"next_cursor":"c1"}"#,
    );
    let page: KeyPage = read(call("GET", "/v1/keys"), &charset).unwrap();
    assert_eq!(page.next_cursor.as_deref(), Some("c1"));
    let deleted: Deleted =
        read(call("DELETE", "/v1/keys/key_abc"), &answer(204, None, "")).unwrap();
    assert_eq!(deleted, Deleted);
}

#[test]
fn token_answers_are_read_and_need_their_secret() {
    let secret = "kgt_0123456789abcdefghijABCDEFGHIJ01234567WXYZ";
    let token = json!({
        "id": "tok_abc", "name": "ci", "role": "editor", "team": "red", "last4": "WXYZ",
        "created_at": "2030-01-01T00:00:00Z", "last_used_at": null, "expires_at": null,
        "rotated_from": null, "token": secret,
    });
    let minted: NewToken = read(call("POST", "/v1/tokens"), &json_answer(201, &token)).unwrap();
    assert_eq!(minted.secret, secret);
    let mut without = token.clone();
    without.as_object_mut().unwrap().remove("token");
    assert!(read::<NewToken>(call("POST", "/v1/tokens"), &json_answer(201, &without)).is_err());
    let mut mismatched = token.clone();
    mismatched["last4"] = json!("0000");
    assert!(read::<NewToken>(call("POST", "/v1/tokens"), &json_answer(201, &mismatched)).is_err());
    let list = json!({"tokens": [without]});
    let list: TokenList = read(call("GET", "/v1/tokens"), &json_answer(200, &list)).unwrap();
    assert_eq!(list.tokens[0].token, None);
    let entry = json!({
        "id": 1, "at": "2030-01-01T00:00:00Z", "token_id": "bootstrap",
        "token_name": "bootstrap", "action": "key.create", "target": "key_abc",
        "team": null, "changes": {"name": "ci"},
    });
    let page = json!({"entries": [entry], "next_cursor": null});
    let page: AuditPage = read(call("GET", "/v1/audit"), &json_answer(200, &page)).unwrap();
    assert_eq!(page.entries[0].action, "key.create");
}

#[test]
fn unknown_fields_are_ignored_so_the_service_can_add_some() {
    let mut served = served_key();
    served["new_field"] = json!({"anything": [1, 2]});
    let key: Key = read(call("GET", "/v1/keys/key_abc"), &json_answer(200, &served)).unwrap();
    assert_eq!(key.id, "key_abc");
}

#[test]
fn keygate_error_answers_keep_their_message() {
    let body = json!({"error": {"code": "VALIDATION_ERROR",
        "message": "allowed_ips[0]: invalid IP or CIDR \"10.0.0.0/33\""}});
    let error = read::<NewKey>(call("POST", "/v1/keys"), &json_answer(400, &body))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        r#"allowed_ips[0]: invalid IP or CIDR "10.0.0.0/33" (VALIDATION_ERROR, HTTP 400)"#
    );
    let body = json!({"error": {"code": "NOT_FOUND", "message": "no such key"}});
    let error = read::<Deleted>(call("DELETE", "/v1/keys/x"), &json_answer(404, &body))
        .unwrap_err()
        .to_string();
    assert_eq!(error, "no such key (NOT_FOUND, HTTP 404)");
}

#[test]
fn answers_from_other_servers_are_refused_by_name() {
    let not_keygate = "http://127.0.0.1:8082 did not answer like a Keygate control service";
    let echo = json!({"method": "POST", "path": "/v1/keys",
        "headers": {"authorization": "Bearer s3cret-admin-token"}});
    let cases: Vec<(&str, Result<NewKey, ClientError>)> = vec![
        (
            "(POST /v1/keys → 200 text/html; expected 201 application/json with a new key and its secret)",
            read(call("POST", "/v1/keys"), &answer(200, Some("text/html"), "<html>")),
        ),
        (
            "(POST /v1/keys → 201 no Content-Type; expected 201",
            read(call("POST", "/v1/keys"), &answer(201, None, &served_new_key().to_string())),
        ),
        (
            "(POST /v1/keys → 201 application/json, missing field `id`; expected 201",
            read(call("POST", "/v1/keys"), &json_answer(201, &echo)),
        ),
        (
            "(POST /v1/keys → 200 application/json; expected 201",
            read(call("POST", "/v1/keys"), &json_answer(200, &served_new_key())),
        ),
        (
            "(POST /v1/keys → 201 application/json, no secret in it; expected 201",
            read(call("POST", "/v1/keys"), &json_answer(201, &served_key())),
        ),
        (
            "(POST /v1/keys → 201 application/json, not valid JSON; expected 201",
            read(call("POST", "/v1/keys"), &answer(201, Some("application/json"), "{\"id\":")),
        ),
        (
            "(POST /v1/keys → 404 text/html; expected 201",
            read(call("POST", "/v1/keys"), &answer(404, Some("text/html"), "Not Found")),
        ),
        (
            "(POST /v1/keys → 502 application/json; expected 201",
            read(call("POST", "/v1/keys"), &json_answer(502, &json!({"message": "bad gateway"}))),
        ),
        (
            "(POST /v1/keys → 201 application/json, over 32 MiB; expected 201",
            read(
                call("POST", "/v1/keys"),
                &answer(201, Some("application/json"), &" ".repeat(MAX_ANSWER_BYTES + 1)),
            ),
        ),
    ];
    for (expected, result) in cases {
        let error = result.unwrap_err();
        assert!(matches!(error, ClientError::NotKeygate(_)), "{error:?}");
        let error = error.to_string();
        assert_eq!(
            error
                .strip_prefix(not_keygate)
                .map(|rest| rest.trim_start().starts_with(expected)),
            Some(true),
            "{error}"
        );
    }
}

#[test]
fn refusals_never_quote_the_answer() {
    let echo = json!({"keys": "Bearer s3cret-admin-token", "next_cursor": null});
    let error = read::<KeyPage>(call("GET", "/v1/keys"), &json_answer(200, &echo))
        .unwrap_err()
        .to_string();
    assert!(error.ends_with("→ 200 application/json, not the expected fields and types; expected 200 application/json with a page of keys)"), "{error}");
    let mut served = served_new_key();
    served["key"] = json!("Bearer s3cret-admin-token");
    let error = read::<NewKey>(call("POST", "/v1/keys"), &json_answer(201, &served))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("its secret does not match its prefix and last four"),
        "{error}"
    );
    assert!(!error.contains("s3cret"), "{error}");
}

#[test]
fn a_body_where_none_belongs_or_a_wrong_status_is_refused() {
    let error = read::<Deleted>(
        call("DELETE", "/v1/keys/key_abc"),
        &json_answer(200, &json!({})),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.ends_with(
            "(DELETE /v1/keys/key_abc → 200 application/json; expected 204 and no body)"
        ),
        "{error}"
    );
    let report = json!({"method": "GET"});
    let error = read::<UsageReport>(call("GET", "/v1/keys/k/usage"), &json_answer(200, &report))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("missing field `key_id`; expected 200 application/json with a usage report"),
        "{error}"
    );
}

#[test]
fn media_types_drop_parameters_and_case() {
    assert_eq!(
        media_type("Application/JSON; charset=utf-8"),
        "application/json"
    );
    assert_eq!(media_type(" text/html "), "text/html");
    assert_eq!(media_type(""), "");
}
