use super::*;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).unwrap()
}

fn document(keys: &[(&str, &SigningKey)]) -> String {
    let entries: Vec<Value> = keys
        .iter()
        .map(|(identifier, key)| {
            serde_json::json!({
                "key_identifier": identifier,
                "key": key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap(),
                "is_current": true,
            })
        })
        .collect();
    serde_json::json!({ "public_keys": entries }).to_string()
}

fn sign(key: &SigningKey, body: &[u8]) -> String {
    let signature: Signature = key.sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

/// The endpoint's two steps: the headers before the body is read, then the signature over it.
fn verify(
    keys: &ScanningKeys,
    identifier: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    keys.precheck(identifier, signature)?
        .verify(signature.unwrap_or_default(), body)
}

#[test]
fn a_signed_body_verifies_and_nothing_else_does() {
    let (one, two) = (signing_key(7), signing_key(9));
    let keys = parse_keys(document(&[("one", &one), ("two", &two)]).as_bytes()).unwrap();
    assert_eq!(keys.summary(), "2 public keys (2 current)");
    let body = br#"[{"token":"t","type":"keygate_api_key","url":"u","source":"content"}]"#;
    let good = sign(&one, body);
    assert_eq!(verify(&keys, Some("one"), Some(&good), body), Ok(()));
    assert_eq!(
        verify(&keys, Some("two"), Some(&good), body),
        Err(SignatureError::Invalid),
        "signed by another trusted key"
    );
    assert_eq!(
        verify(&keys, Some("one"), Some(&good), &body[..body.len() - 1]),
        Err(SignatureError::Invalid),
        "a truncated body"
    );
    assert_eq!(
        verify(&keys, Some("three"), Some(&good), body),
        Err(SignatureError::UnknownKey)
    );
    assert_eq!(
        verify(&keys, None, Some(&good), body),
        Err(SignatureError::Missing)
    );
    assert_eq!(
        verify(&keys, Some("one"), Some(""), body),
        Err(SignatureError::Missing)
    );
    assert_eq!(
        verify(&keys, Some("one"), Some("not base64!"), body),
        Err(SignatureError::Malformed)
    );
    assert_eq!(
        verify(&keys, Some("one"), Some("AAAA"), body),
        Err(SignatureError::Malformed)
    );
    // What needs no body is refused before it is read.
    assert!(keys.precheck(Some("one"), Some("x")).is_ok());
    assert_eq!(
        keys.precheck(Some("three"), Some("x")).err(),
        Some(SignatureError::UnknownKey)
    );
    assert_eq!(
        keys.precheck(Some("one"), None).err(),
        Some(SignatureError::Missing)
    );
    let stranger = sign(&signing_key(11), body);
    assert_eq!(
        verify(&keys, Some("one"), Some(&stranger), body),
        Err(SignatureError::Invalid)
    );
}

#[test]
fn the_keys_file_is_read_strictly() {
    let one = signing_key(7);
    assert!(parse_keys(b"{}").is_err());
    assert!(parse_keys(br#"{"public_keys": [], "extra": 1}"#).is_err());
    assert!(
        parse_keys(br#"{"public_keys": [{"key_identifier": "a", "key": "nope"}]}"#)
            .unwrap_err()
            .contains("public_keys[0].key")
    );
    let twice = document(&[("a", &one), ("a", &one)]);
    assert!(parse_keys(twice.as_bytes())
        .unwrap_err()
        .contains("listed twice"));
    let empty_id = document(&[("", &one)]);
    assert!(parse_keys(empty_id.as_bytes()).is_err());
    assert!(parse_keys(br#"{"public_keys": []}"#).unwrap().is_empty());
}

#[test]
fn reports_are_read_tolerantly() {
    let report = parse_report(
        br#"[{"token":"a","type":"t","url":"u","source":"content","new":1},
            {"type":"no token"}, 7, {"token": 5}, {"token":""}, {"token":"b"}]"#,
    )
    .unwrap();
    assert_eq!(report.skipped, 4);
    assert_eq!(
        report.tokens,
        vec![
            ReportedToken {
                token: "a".into(),
                token_type: Some("t".into()),
                url: Some("u".into()),
                source: Some("content".into()),
            },
            ReportedToken {
                token: "b".into(),
                token_type: None,
                url: None,
                source: None,
            },
        ]
    );
    assert!(parse_report(br#"{"token":"a"}"#).is_err());
    assert!(parse_report(br#"[{"token":"a"}"#).is_err(), "truncated");
}

#[test]
fn feedback_has_githubs_shape() {
    let feedback = TokenFeedback {
        token_hash: "ab".into(),
        token_type: "keygate_api_key".into(),
        label: Label::FalsePositive,
    };
    assert_eq!(
        serde_json::to_value(&feedback).unwrap(),
        serde_json::json!({"token_hash": "ab", "token_type": "keygate_api_key", "label": "false_positive"})
    );
}
