//! Token requests read as RFC 6749 writes them, scopes only narrowed, keys turned over.

use super::*;
use base64::Engine as _;
use chrono::TimeZone;

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

#[test]
fn basic_and_body_authentication_both_read() {
    let header = basic("key_1", "pk_live_a%2Bb");
    let request =
        parse_token_request(FORM, Some(&header), b"grant_type=client_credentials").unwrap();
    assert_eq!(request.client.client_id, "key_1");
    assert_eq!(
        request.client.client_secret, "pk_live_a+b",
        "form-urlencoded inside Basic"
    );
    assert!(request.used_basic);
    assert_eq!(request.scope, None);
    let request = parse_token_request(
        Some("application/x-www-form-urlencoded; charset=utf-8"),
        None,
        b"grant_type=client_credentials&client_id=key_1&client_secret=pk_live_x&scope=a%20b",
    )
    .unwrap();
    assert_eq!(request.client.client_secret, "pk_live_x");
    assert_eq!(request.scope, Some(vec!["a".into(), "b".into()]));
    assert!(!request.used_basic);
    assert!(
        !format!("{request:?}").contains("pk_live_x"),
        "the secret stays out of logs"
    );
}

/// Content type, Authorization, body, and the code the request is refused with.
type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a [u8], ErrorCode);

#[test]
fn refusals_carry_rfc_6749_codes() {
    let header = basic("key_1", "s");
    let cases: [Case; 9] = [
        (
            Some("application/json"),
            None,
            b"{}",
            ErrorCode::InvalidRequest,
        ),
        (
            FORM,
            None,
            b"grant_type=client_credentials",
            ErrorCode::InvalidClient,
        ),
        (
            FORM,
            Some("Bearer x"),
            b"grant_type=client_credentials",
            ErrorCode::InvalidClient,
        ),
        (FORM, Some(&header), b"", ErrorCode::InvalidRequest),
        (
            FORM,
            Some(&header),
            b"grant_type=password",
            ErrorCode::UnsupportedGrantType,
        ),
        (
            FORM,
            Some(&header),
            b"grant_type=client_credentials&grant_type=client_credentials",
            ErrorCode::InvalidRequest,
        ),
        (
            FORM,
            Some(&header),
            b"grant_type=client_credentials&client_secret=s",
            ErrorCode::InvalidRequest,
        ),
        (
            FORM,
            Some(&header),
            b"grant_type=client_credentials&scope=",
            ErrorCode::InvalidScope,
        ),
        (
            FORM,
            Some(&header),
            b"grant_type=client_credentials&scope=a%22b",
            ErrorCode::InvalidScope,
        ),
    ];
    for (content_type, authorization, body, code) in cases {
        let error = parse_token_request(content_type, authorization, body).unwrap_err();
        assert_eq!(error.code, code, "{:?}", String::from_utf8_lossy(body));
    }
    let error = parse_token_request(FORM, Some(&header), b"grant_type=x").unwrap_err();
    assert!(error.used_basic);
    assert_eq!(
        parse_token_request(FORM, None, b"grant_type=client_credentials")
            .unwrap_err()
            .status(),
        401
    );
}

#[test]
fn scopes_narrow_and_never_widen() {
    let key = vec!["submit_job".to_string(), "check_status".to_string()];
    assert_eq!(granted_scopes(&key, None).unwrap(), Some(key.clone()));
    assert_eq!(
        granted_scopes(&key, Some(&["check_status".into(), "check_status".into()])).unwrap(),
        Some(vec!["check_status".to_string()])
    );
    let error = granted_scopes(&key, Some(&["list_models".into()])).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidScope);
    // A key without scopes holds them all: any narrowing is fine, none asked gives no claim.
    assert_eq!(granted_scopes(&[], None).unwrap(), None);
    assert_eq!(
        granted_scopes(&[], Some(&["list_models".into()])).unwrap(),
        Some(vec!["list_models".to_string()])
    );
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

fn key(kid: &str, active_from: i64) -> KeyTimes {
    KeyTimes {
        kid: kid.into(),
        active_from: at(active_from),
    }
}

#[test]
fn keys_sign_in_turn_and_stay_published_until_their_tokens_expire() {
    let schedule = KeySchedule {
        token_lifetime: Duration::seconds(900),
        rotation: Duration::seconds(10_000),
        publish_ahead: Duration::seconds(300),
    };
    assert!(schedule.rotation_due(&[], at(0)));
    let keys = vec![key("a", 0)];
    assert_eq!(schedule.signer(&keys, at(5)).unwrap().kid, "a");
    assert!(!schedule.rotation_due(&keys, at(9_999)));
    assert!(schedule.rotation_due(&keys, at(10_000)));
    // The successor is published ahead and does not sign until then.
    let keys = vec![key("a", 0), key("b", 10_300)];
    assert!(
        !schedule.rotation_due(&keys, at(10_000)),
        "one successor waits"
    );
    assert_eq!(schedule.signer(&keys, at(10_299)).unwrap().kid, "a");
    assert_eq!(schedule.signer(&keys, at(10_300)).unwrap().kid, "b");
    assert!(schedule.published(&keys, &keys[1], at(10_000)));
    // The old key stays while a token it signed can live: 900 s and a minute of leeway.
    assert!(schedule.published(&keys, &keys[0], at(10_300 + 959)));
    assert!(!schedule.published(&keys, &keys[0], at(10_300 + 960)));
}

#[test]
fn the_key_hash_claim_has_the_contracts_name() {
    let claims = AccessClaims {
        iss: "i".into(),
        sub: "key_1".into(),
        aud: "a".into(),
        client_id: "key_1".into(),
        scope: None,
        jti: "j".into(),
        iat: 1,
        exp: 2,
        keygate_key_hash: "h".into(),
        keygate_scope: "*".into(),
    };
    let json = serde_json::to_value(&claims).unwrap();
    assert_eq!(json[access_token::KEY_HASH_CLAIM], "h");
    assert_eq!(json[access_token::SUBJECT_CLAIM], "key_1");
    assert!(
        json.get(access_token::SCOPE_CLAIM).is_none(),
        "no scope: no claim"
    );
}
