//! The key snapshot: the wire contract between the control service (or any backend a team
//! writes) and the filter. This is the one Rust definition of it; the control service serves
//! these types and the filter parses them. `docs/snapshot.md` and `docs/snapshot.schema.json`
//! describe the same thing for other implementers. Unknown fields are ignored (forward
//! compatibility); missing required fields reject the page.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One page of a snapshot, full or delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Monotonically increasing; changes on every key change.
    pub version: u64,
    /// Identifies the key store. A different epoch means versions are not comparable and the
    /// filter must take a full snapshot.
    #[serde(default)]
    pub epoch: String,
    /// `true`: `keys` (over all pages) is the complete set and replaces what the proxy has.
    /// `false`: a delta: `keys` were added or changed and `deleted` were removed since `since`.
    pub full: bool,
    /// For a delta, the version it applies on top of.
    #[serde(default)]
    pub since: u64,
    #[serde(default)]
    pub keys: Vec<KeyRecord>,
    /// SHA-256 hashes (lowercase hex) of keys removed since `since` (deltas only).
    #[serde(default)]
    pub deleted: Vec<String>,
    /// Present when more pages of this snapshot follow; pass it back as `cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One API key as proxies see it. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Stable public identifier, e.g. `key_2Vx…`.
    pub id: String,
    /// SHA-256 of the full secret, 64 lowercase hex characters.
    pub hash: String,
    /// The environment prefix of the secret, e.g. `pk_live_`.
    pub prefix: String,
    /// Last four characters of the secret, for display only.
    #[serde(default)]
    pub last4: String,
    pub name: String,
    #[serde(default)]
    pub team: String,
    /// `live` or `test`.
    pub environment: String,
    /// Empty means full access.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// IPs or CIDRs, v4 or v6. Empty means any address.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// RFC 3339 instant at which the key stops working, or null.
    #[serde(default)]
    pub expires_at: Option<String>,
    pub active: bool,
    /// Plan name, informational (limits are already resolved below).
    #[serde(default)]
    pub plan: String,
    /// Effective limits (plan defaults with per-key overrides applied); null means unlimited.
    #[serde(default)]
    pub limits: Limits,
    /// RFC 3339 instant until which the key is over its usage quota, or null.
    #[serde(default)]
    pub quota_exceeded_until: Option<String>,
}

/// Effective request limits of a key. `None` means no limit on that window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default)]
    pub per_minute: Option<u64>,
    #[serde(default)]
    pub per_hour: Option<u64>,
    #[serde(default)]
    pub per_day: Option<u64>,
    #[serde(default)]
    pub concurrent: Option<u64>,
}

impl Snapshot {
    /// Parses a snapshot page from the bytes the control service sent.
    pub fn from_slice(bytes: &[u8]) -> Result<Snapshot, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A snapshot page as the filter reads it: the page's own fields parsed, each key record kept
/// as its JSON text, so that a record that does not even parse (a negative limit, a number
/// where a string belongs) is quarantined alone instead of failing the page
/// (`contract::record::validate_page`). Borrows from the response body.
#[derive(Debug, Deserialize)]
pub struct PageText<'a> {
    pub version: u64,
    #[serde(default)]
    pub epoch: String,
    pub full: bool,
    #[serde(default)]
    pub since: u64,
    #[serde(default, borrow)]
    pub keys: Vec<&'a RawValue>,
    #[serde(default)]
    pub deleted: Vec<String>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

impl<'a> PageText<'a> {
    /// Parses the page; only structural damage (not JSON, not a page) is an error here.
    pub fn parse(bytes: &'a [u8]) -> Result<PageText<'a>, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_full_snapshot() {
        let snapshot = Snapshot {
            version: 7,
            epoch: "e1".into(),
            full: true,
            since: 0,
            keys: vec![KeyRecord {
                id: "key_1".into(),
                hash: "a".repeat(64),
                prefix: "pk_live_".into(),
                last4: "wxyz".into(),
                name: "prod".into(),
                team: "t".into(),
                environment: "live".into(),
                scopes: vec!["submit_job".into()],
                allowed_ips: vec!["10.0.0.0/8".into()],
                expires_at: Some("2030-01-01T00:00:00Z".into()),
                active: true,
                plan: "free".into(),
                limits: Limits {
                    per_minute: Some(60),
                    per_day: Some(1000),
                    ..Limits::default()
                },
                quota_exceeded_until: None,
            }],
            deleted: vec![],
            next_cursor: None,
        };
        let bytes = serde_json::to_vec(&snapshot).unwrap();
        assert_eq!(Snapshot::from_slice(&bytes).unwrap(), snapshot);
    }

    #[test]
    fn a_page_keeps_each_record_as_text() {
        let body = br#"{"version":3,"full":false,"since":2,"keys":[{"id":"a"},{"id":1,"limits":{"per_minute":-1}}],"extra":true}"#;
        let page = PageText::parse(body).unwrap();
        assert_eq!((page.version, page.full, page.since), (3, false, 2));
        assert_eq!(page.keys.len(), 2);
        assert_eq!(page.keys[1].get(), r#"{"id":1,"limits":{"per_minute":-1}}"#);
        assert!(PageText::parse(br#"{"version":3,"full":true,"keys":[{"id":"a"}"#).is_err());
        assert!(PageText::parse(br#"{"version":3,"full":true,"keys":{}}"#).is_err());
    }

    #[test]
    fn rejects_missing_version_and_ignores_unknown_fields() {
        // Unknown fields are ignored so a newer control service can add fields without
        // breaking older filters.
        assert!(Snapshot::from_slice(br#"{"version":1,"full":true,"newer":1}"#).is_ok());
        assert!(Snapshot::from_slice(br#"{"full":true}"#).is_err());
        assert!(Snapshot::from_slice(b"not json").is_err());
    }
}
