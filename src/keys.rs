//! Key hashing, the compact per-key record the filter stores, and validation of snapshot
//! pages into those records (a page is accepted whole or rejected whole).

use std::collections::HashSet;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::codec::MAX_ENTRIES;
use crate::net::parse_allowlist_entry;
use crate::snapshot::{KeyRecord, Limits, Snapshot};
use crate::timefmt::parse_rfc3339;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// SHA-256 of the key as presented. A key is a high-entropy random string, so a fast unsalted
/// hash is enough: there is nothing to brute-force (see docs/security.md). The request path
/// works on these bytes directly; hex is for snapshots, logs and tests.
pub fn digest_key(key: &str) -> Digest {
    Sha256::digest(key.as_bytes()).into()
}

/// Lowercase hex SHA-256 of the key as presented, as snapshots carry it.
pub fn hash_key(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // A table rather than `format!`: core::fmt cost more instructions than the hash itself
    // (callgrind, docs/benchmarks.md).
    let mut hex = String::with_capacity(64);
    for byte in digest_key(key) {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 15)]));
    }
    hex
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// The digest written as 64 lowercase hex digits; `None` for anything else.
pub fn parse_hex_digest(hex: &str) -> Option<Digest> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = hex_value(hex[2 * i])? << 4 | hex_value(hex[2 * i + 1])?;
    }
    Some(digest)
}

/// `pk_live_…wxyz`: what may appear in logs instead of a key.
pub fn redact(key: &str) -> String {
    let prefix_end = key.rfind('_').map_or(0, |p| p + 1).min(12);
    let last4_start = key.len().saturating_sub(4).max(prefix_end);
    let prefix = key.get(..prefix_end).unwrap_or("");
    let last4 = key.get(last4_start..).unwrap_or("");
    format!("{prefix}…{last4}")
}

/// One key as held in the filter's store: what the request path needs, already parsed.
/// Field names are short because a million of these live in Envoy's shared data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredKey {
    /// Store generation this record was written in (see `store.rs`).
    #[serde(rename = "g")]
    pub generation: u64,
    #[serde(rename = "i")]
    pub id: String,
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "t")]
    pub team: String,
    #[serde(rename = "e")]
    pub environment: String,
    #[serde(rename = "p")]
    pub prefix: String,
    #[serde(rename = "s")]
    pub scopes: Vec<String>,
    #[serde(rename = "a")]
    pub allowed_ips: Vec<IpNet>,
    /// Unix seconds.
    #[serde(rename = "x")]
    pub expires_at: Option<i64>,
    #[serde(rename = "o")]
    pub active: bool,
    #[serde(rename = "l")]
    pub limits: Limits,
    /// Unix seconds.
    #[serde(rename = "q")]
    pub quota_exceeded_until: Option<i64>,
}

impl StoredKey {
    /// The compact binary form kept in shared data (see `codec.rs`).
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Option<StoredKey> {
        crate::codec::decode(bytes)
    }
}

/// A snapshot page checked and converted, ready to be written to the store.
#[derive(Debug, Default)]
pub struct ValidPage {
    pub upserts: Vec<(String, StoredKey)>,
    pub deletions: Vec<String>,
}

fn is_hash(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Header values we forward must not carry control characters.
fn is_header_safe(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

fn validate_record(index: usize, record: &KeyRecord, generation: u64) -> Result<StoredKey, String> {
    let at = |field: &str| format!("keys[{index}].{field}");
    if !is_hash(&record.hash) {
        return Err(format!("{}: not 64 lowercase hex characters", at("hash")));
    }
    for (field, value) in [
        ("id", &record.id),
        ("name", &record.name),
        ("team", &record.team),
        ("environment", &record.environment),
        ("prefix", &record.prefix),
    ] {
        if !is_header_safe(value) || value.len() > 256 {
            return Err(format!(
                "{}: control characters or longer than 256 bytes",
                at(field)
            ));
        }
    }
    if record.id.is_empty() {
        return Err(format!("{}: must not be empty", at("id")));
    }
    if record.scopes.len() > MAX_ENTRIES || record.allowed_ips.len() > MAX_ENTRIES {
        return Err(format!(
            "keys[{index}]: more than {MAX_ENTRIES} scopes or allowed_ips"
        ));
    }
    for (i, scope) in record.scopes.iter().enumerate() {
        if scope.is_empty() || scope.len() > 256 || scope.contains(',') || !is_header_safe(scope) {
            return Err(format!("{}[{i}]: invalid scope {scope:?}", at("scopes")));
        }
    }
    let mut allowed_ips = Vec::with_capacity(record.allowed_ips.len());
    for (i, entry) in record.allowed_ips.iter().enumerate() {
        let net = parse_allowlist_entry(entry)
            .ok_or_else(|| format!("{}[{i}]: invalid IP or CIDR {entry:?}", at("allowed_ips")))?;
        allowed_ips.push(net);
    }
    let expires_at = match &record.expires_at {
        Some(text) => {
            Some(parse_rfc3339(text).ok_or_else(|| format!("{}: not RFC 3339", at("expires_at")))?)
        }
        None => None,
    };
    let quota_exceeded_until = match &record.quota_exceeded_until {
        Some(text) => Some(
            parse_rfc3339(text)
                .ok_or_else(|| format!("{}: not RFC 3339", at("quota_exceeded_until")))?,
        ),
        None => None,
    };
    Ok(StoredKey {
        generation,
        id: record.id.clone(),
        name: record.name.clone(),
        team: record.team.clone(),
        environment: record.environment.clone(),
        prefix: record.prefix.clone(),
        scopes: record.scopes.clone(),
        allowed_ips,
        expires_at,
        active: record.active,
        limits: record.limits.clone(),
        quota_exceeded_until,
    })
}

/// Validates a whole page; any bad record rejects the page. Records are stamped with
/// `generation`.
pub fn validate_page(snapshot: &Snapshot, generation: u64) -> Result<ValidPage, String> {
    let mut seen = HashSet::with_capacity(snapshot.keys.len() + snapshot.deleted.len());
    let mut page = ValidPage {
        upserts: Vec::with_capacity(snapshot.keys.len()),
        deletions: Vec::with_capacity(snapshot.deleted.len()),
    };
    for (index, record) in snapshot.keys.iter().enumerate() {
        let stored = validate_record(index, record, generation)?;
        if !seen.insert(record.hash.as_str()) {
            return Err(format!("keys[{index}].hash: duplicate hash"));
        }
        page.upserts.push((record.hash.clone(), stored));
    }
    if snapshot.full && !snapshot.deleted.is_empty() {
        return Err("deleted: must be empty in a full snapshot".into());
    }
    for (index, hash) in snapshot.deleted.iter().enumerate() {
        if !is_hash(hash) {
            return Err(format!("deleted[{index}]: not 64 lowercase hex characters"));
        }
        if !seen.insert(hash.as_str()) {
            return Err(format!(
                "deleted[{index}]: hash also listed in keys or twice"
            ));
        }
        page.deletions.push(hash.clone());
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answers() {
        assert_eq!(
            hash_key(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_digests_round_trip() {
        let hex = hash_key("abc");
        assert_eq!(parse_hex_digest(&hex), Some(digest_key("abc")));
        assert_eq!(parse_hex_digest(&hex.to_uppercase()), None);
        assert_eq!(parse_hex_digest(&hex[1..]), None);
        assert_eq!(parse_hex_digest("zz"), None);
    }

    #[test]
    fn redaction_keeps_prefix_and_last_four_only() {
        assert_eq!(redact("pk_live_AbCdEfGhIjKlMnOp1234"), "pk_live_…1234");
        assert_eq!(redact("abcdefgh"), "…efgh");
        assert_eq!(redact("ab"), "…ab");
        assert_eq!(redact("pk_test_x"), "pk_test_…x");
    }

    fn record(hash: &str) -> KeyRecord {
        KeyRecord {
            id: "key_1".into(),
            hash: hash.into(),
            prefix: "pk_live_".into(),
            last4: "abcd".into(),
            name: "prod".into(),
            team: "team-a".into(),
            environment: "live".into(),
            scopes: vec!["submit_job".into()],
            allowed_ips: vec!["10.0.0.0/8".into(), "::1".into()],
            expires_at: Some("2030-01-01T00:00:00Z".into()),
            active: true,
            plan: "free".into(),
            limits: Limits::default(),
            quota_exceeded_until: None,
        }
    }

    fn snapshot(keys: Vec<KeyRecord>, deleted: Vec<String>, full: bool) -> Snapshot {
        Snapshot {
            version: 1,
            epoch: "e".into(),
            full,
            since: 0,
            keys,
            deleted,
            next_cursor: None,
        }
    }

    #[test]
    fn valid_page_converts_and_round_trips() {
        let page =
            validate_page(&snapshot(vec![record(&"a".repeat(64))], vec![], true), 9).unwrap();
        let (hash, stored) = &page.upserts[0];
        assert_eq!(hash, &"a".repeat(64));
        assert_eq!(stored.generation, 9);
        assert_eq!(stored.expires_at, Some(1_893_456_000));
        assert_eq!(StoredKey::decode(&stored.encode()).as_ref(), Some(stored));
    }

    #[test]
    fn any_bad_record_rejects_the_page() {
        let good = record(&"a".repeat(64));
        let mut bad_cidr = record(&"b".repeat(64));
        bad_cidr.allowed_ips = vec!["10.0.0.0/33".into()];
        let mut bad_hash = record("ABC");
        bad_hash.id = "key_2".into();
        let mut bad_expiry = record(&"c".repeat(64));
        bad_expiry.expires_at = Some("tomorrow".into());
        let mut bad_name = record(&"d".repeat(64));
        bad_name.name = "evil\r\nx-injected: 1".into();
        let cases = [
            (vec![good.clone(), bad_cidr], "keys[1].allowed_ips[0]"),
            (vec![bad_hash], "keys[0].hash"),
            (vec![good.clone(), good.clone()], "keys[1].hash: duplicate"),
            (vec![bad_expiry], "keys[0].expires_at"),
            (vec![bad_name], "keys[0].name"),
        ];
        for (keys, expected) in cases {
            let err = validate_page(&snapshot(keys, vec![], true), 1).unwrap_err();
            assert!(err.starts_with(expected), "{err}");
        }
        let err = validate_page(&snapshot(vec![], vec!["zz".into()], false), 1).unwrap_err();
        assert!(err.starts_with("deleted[0]"), "{err}");
        let err = validate_page(&snapshot(vec![], vec!["a".repeat(64)], true), 1).unwrap_err();
        assert!(err.starts_with("deleted:"), "{err}");
    }
}
