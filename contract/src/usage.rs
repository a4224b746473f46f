//! Usage reports as the filter posts them and the control service counts them
//! (`POST /v1/usage`). Read tolerantly: unknown fields are ignored, so either side can be
//! upgraded first and a field added in a rolling upgrade never drops usage (and with it quota
//! enforcement).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Body of `POST /v1/usage`: one Envoy's counts since its last post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsagePost {
    /// Which Envoy sent it.
    pub proxy_id: String,
    /// Unique per batch and kept across retries, so a retried batch is counted once.
    pub batch_id: String,
    pub reports: Vec<UsageReport>,
}

/// One key's usage in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageReport {
    pub key_id: String,
    /// RFC 3339 start of the UTC hour.
    pub hour: String,
    pub allowed: u64,
    /// Denied requests by error code (`RATE_LIMIT_EXCEEDED`, …).
    #[serde(default)]
    pub denied: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_on_both_levels() {
        let body = br#"{"proxy_id":"p","batch_id":"b","added_later":1,
            "reports":[{"key_id":"k","hour":"2026-01-01T00:00:00Z","allowed":2,"region":"eu"}]}"#;
        let post: UsagePost = serde_json::from_slice(body).unwrap();
        assert_eq!(post.reports[0].allowed, 2);
        assert!(post.reports[0].denied.is_empty());
    }

    #[test]
    fn required_fields_stay_required() {
        assert!(serde_json::from_slice::<UsagePost>(br#"{"proxy_id":"p","reports":[]}"#).is_err());
        assert!(serde_json::from_slice::<UsageReport>(br#"{"key_id":"k","allowed":1}"#).is_err());
    }
}
