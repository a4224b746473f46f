//! The admin API's answers, read strictly enough to tell the Keygate control service from any
//! other server: each success has one status, is JSON, and deserializes into its type below;
//! errors have the service's `{"error":{"code","message"}}` shape. Anything else is refused
//! with a message naming the server, the request and what came back.
//!
//! A key is read into the served type itself (`api::views::KeyView`); the list and usage answers
//! are private to their handlers, so their wire forms are mirrored here, and a test below
//! round-trips the served types through them.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::error::Category;

/// Answers longer than this are not read to the end (Keygate's largest, a page of 1,000 keys or
/// a year of hourly usage, is a few MiB).
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// A key as the admin API shows it: the very type the service serves.
pub type Key = crate::wire::views::KeyView;
/// The limits an admin sees: the very type the service serves.
pub type EffectiveLimits = crate::domain::plans::AdminLimits;

/// A key just created or rotated, with its secret (which the answer must carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub key: Key,
    pub secret: String,
}

/// `DELETE /v1/keys/{id}` succeeded (204, no body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted;

/// A management token as the admin API shows it: the very type the service serves.
pub type Token = crate::wire::views::TokenView;
/// One page of `GET /v1/keys`.
pub type KeyPage = crate::wire::views::KeyList;
/// `GET /v1/keys/{id}/usage`.
pub type UsageReport = crate::wire::views::KeyUsage;
/// `GET /v1/usage`.
pub type TeamUsageReport = crate::wire::views::TeamUsage;
/// Requests in one bucket or in total.
pub type UsageCounts = crate::domain::usage_range::Counts;
/// The counts of one hour or day.
pub type UsageBucket = crate::domain::usage_range::Bucket;
/// `GET /v1/tokens`.
pub type TokenList = crate::wire::views::TokenList;
/// One page of `GET /v1/audit`.
pub type AuditPage = crate::wire::views::AuditPage;
/// An audit log entry: the very type the service serves.
pub type AuditEntry = crate::domain::audit::AuditEntry;

/// A token just created or rotated, with its secret (which the answer must carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub token: Token,
    pub secret: String,
}

impl Reply for NewToken {
    const STATUS: u16 = 201;
    const BODY: Option<&'static str> = Some("a new token and its secret");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        let token: Token = json(body)?;
        match token.token.clone() {
            None => Err("no secret in it".into()),
            Some(secret) if !secret.starts_with("kgt_") || !secret.ends_with(&token.last4) => {
                Err("its secret does not match the token prefix and its last four".into())
            }
            Some(secret) => Ok(NewToken { token, secret }),
        }
    }
}

impl Reply for TokenList {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a list of tokens");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

impl Reply for AuditPage {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a page of audit entries");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

/// The service's error shape, `api::error::ApiError` on the wire.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// A success answer of the admin API: the status Keygate answers with and how its body reads.
pub trait Reply: Sized {
    const STATUS: u16;
    /// What the JSON body holds, for messages (`a key`); `None` when there is no body.
    const BODY: Option<&'static str>;
    /// Reads the body of an answer that came with `STATUS`; the error says what is wrong
    /// with it, without quoting it.
    fn from_body(body: &[u8]) -> Result<Self, String>;
}

impl Reply for Key {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a key");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

impl Reply for NewKey {
    const STATUS: u16 = 201;
    const BODY: Option<&'static str> = Some("a new key and its secret");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        let key: Key = json(body)?;
        match key.key.clone() {
            None => Err("no secret in it".into()),
            // A key's prefix and last four are cut from its secret.
            Some(secret) if !secret.starts_with(&key.prefix) || !secret.ends_with(&key.last4) => {
                Err("its secret does not match its prefix and last four".into())
            }
            Some(secret) => Ok(NewKey { key, secret }),
        }
    }
}

impl Reply for KeyPage {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a page of keys");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

impl Reply for UsageReport {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a usage report");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

impl Reply for TeamUsageReport {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a team usage report");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

impl Reply for Deleted {
    const STATUS: u16 = 204;
    const BODY: Option<&'static str> = None;
    fn from_body(_: &[u8]) -> Result<Self, String> {
        Ok(Deleted)
    }
}

/// One request, as messages name it: the service's base URL, `POST` and `/v1/keys` (no query).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub base_url: &'a str,
    pub method: &'a str,
    pub path: &'a str,
}

/// What came back: the status, the media type of `Content-Type` (lowercase, no parameters) and
/// up to `MAX_ANSWER_BYTES + 1` bytes of the body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub media_type: Option<String>,
    pub body: Vec<u8>,
}

/// `application/json` from `Application/JSON; charset=utf-8`.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The answer as `T` if it is Keygate's success answer to `call`; Keygate's own error answers
/// as `message (CODE, HTTP status)`; anything else as a message saying the server is not Keygate.
pub fn read<T: Reply>(call: Call, answer: &Answer) -> Result<T, String> {
    if answer.body.len() > MAX_ANSWER_BYTES {
        let limit = format!("over {} MiB", MAX_ANSWER_BYTES / (1024 * 1024));
        return Err(not_keygate::<T>(call, answer, Some(&limit)));
    }
    let is_json = answer.media_type.as_deref() == Some("application/json");
    if answer.status == T::STATUS {
        if T::BODY.is_some() && !is_json {
            return Err(not_keygate::<T>(call, answer, None));
        }
        return T::from_body(&answer.body)
            .map_err(|problem| not_keygate::<T>(call, answer, Some(&problem)));
    }
    if (400..=599).contains(&answer.status) && is_json {
        if let Ok(ErrorAnswer { error }) = serde_json::from_slice(&answer.body) {
            return Err(format!(
                "{} ({}, HTTP {})",
                error.message, error.code, answer.status
            ));
        }
    }
    Err(not_keygate::<T>(call, answer, None))
}

/// `http://127.0.0.1:8082 did not answer like a Keygate control service (POST /v1/keys → 200
/// text/html; expected 201 application/json with a new key and its secret)`.
fn not_keygate<T: Reply>(call: Call, answer: &Answer, problem: Option<&str>) -> String {
    let media_type = answer.media_type.as_deref().unwrap_or("no Content-Type");
    let problem = problem
        .map(|problem| format!(", {problem}"))
        .unwrap_or_default();
    let expected = match T::BODY {
        Some(body) => format!("{} application/json with {body}", T::STATUS),
        None => format!("{} and no body", T::STATUS),
    };
    format!(
        "{} did not answer like a Keygate control service ({} {} → {} {media_type}{problem}; \
         expected {expected})",
        call.base_url, call.method, call.path, answer.status
    )
}

/// The body as `T`. What is wrong is described by field name only: serde's own messages quote
/// the offending value, and a server that echoes requests would have the admin token in it.
pub(super) fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        Category::Data => {
            let message = error.to_string();
            match message.split_once(" at line ") {
                Some((missing, _)) if missing.starts_with("missing field `") => missing.into(),
                _ => "not the expected fields and types".into(),
            }
        }
        Category::Syntax | Category::Eof => "not valid JSON".into(),
        Category::Io => "unreadable".into(),
    })
}

#[cfg(test)]
mod tests {
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
        assert!(
            read::<NewToken>(call("POST", "/v1/tokens"), &json_answer(201, &mismatched)).is_err()
        );
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
        let error = read::<NewKey>(call("POST", "/v1/keys"), &json_answer(400, &body)).unwrap_err();
        assert_eq!(
            error,
            r#"allowed_ips[0]: invalid IP or CIDR "10.0.0.0/33" (VALIDATION_ERROR, HTTP 400)"#
        );
        let body = json!({"error": {"code": "NOT_FOUND", "message": "no such key"}});
        let error =
            read::<Deleted>(call("DELETE", "/v1/keys/x"), &json_answer(404, &body)).unwrap_err();
        assert_eq!(error, "no such key (NOT_FOUND, HTTP 404)");
    }

    #[test]
    fn answers_from_other_servers_are_refused_by_name() {
        let not_keygate = "http://127.0.0.1:8082 did not answer like a Keygate control service";
        let echo = json!({"method": "POST", "path": "/v1/keys",
            "headers": {"authorization": "Bearer s3cret-admin-token"}});
        let cases: Vec<(&str, Result<NewKey, String>)> = vec![
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
        let error = read::<KeyPage>(call("GET", "/v1/keys"), &json_answer(200, &echo)).unwrap_err();
        assert!(error.ends_with("→ 200 application/json, not the expected fields and types; expected 200 application/json with a page of keys)"), "{error}");
        let mut served = served_new_key();
        served["key"] = json!("Bearer s3cret-admin-token");
        let error =
            read::<NewKey>(call("POST", "/v1/keys"), &json_answer(201, &served)).unwrap_err();
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
        .unwrap_err();
        assert!(
            error.ends_with(
                "(DELETE /v1/keys/key_abc → 200 application/json; expected 204 and no body)"
            ),
            "{error}"
        );
        let report = json!({"method": "GET"});
        let error =
            read::<UsageReport>(call("GET", "/v1/keys/k/usage"), &json_answer(200, &report))
                .unwrap_err();
        assert!(
            error.contains(
                "missing field `key_id`; expected 200 application/json with a usage report"
            ),
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
}
