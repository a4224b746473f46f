//! Leaked keys: what a report says about where a key was found, what the service does about it
//! (the policy) and how the leak is kept on the key (docs/security.md, "Leaked keys"). Never the
//! reported secret itself: only its hash travels past the first lookup.

use crate::domain::clock;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the service does with a key reported leaked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakPolicy {
    /// Deactivate it at once (the default), record the leak and alert.
    Revoke,
    /// Record the leak and alert; the key keeps working.
    Notify,
}

impl LeakPolicy {
    pub fn parse(name: &str) -> Option<LeakPolicy> {
        match name {
            "revoke" => Some(LeakPolicy::Revoke),
            "notify" => Some(LeakPolicy::Notify),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LeakPolicy::Revoke => "revoke",
            LeakPolicy::Notify => "notify",
        }
    }
}

/// Longest `url` kept; a longer one is cut (a scanner's report is read tolerantly).
pub const MAX_URL_CHARS: usize = 2048;
/// Longest `source`, `token_type` and scanner name kept.
pub const MAX_LABEL_CHARS: usize = 100;

/// Where and how a key was found, as stored on the key (the first report) and shown in its read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLeak {
    /// When the report arrived (RFC 3339, UTC).
    pub reported_at: String,
    /// Who found it: `github` (secret scanning) or `manual` (`POST /v1/keys/leaked`).
    pub scanner: String,
    /// Where it was found, if the report said.
    #[serde(default)]
    pub url: Option<String>,
    /// What kind of place that is (`content`, `commit`, `npm`, … for GitHub).
    #[serde(default)]
    pub source: Option<String>,
    /// The token type the scanner matched (GitHub's `type`).
    #[serde(default)]
    pub token_type: Option<String>,
}

/// `text` cut to `max` characters, without control characters; `None` when nothing is left.
pub fn bounded(text: Option<&str>, max: usize) -> Option<String> {
    let kept: String = text?
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect();
    (!kept.is_empty()).then_some(kept)
}

impl KeyLeak {
    /// A leak reported now by `scanner`, every field bounded.
    pub fn new(
        scanner: &str,
        url: Option<&str>,
        source: Option<&str>,
        token_type: Option<&str>,
        now: DateTime<Utc>,
    ) -> KeyLeak {
        KeyLeak {
            reported_at: clock::format(now),
            scanner: bounded(Some(scanner), MAX_LABEL_CHARS).unwrap_or_default(),
            url: bounded(url, MAX_URL_CHARS),
            source: bounded(source, MAX_LABEL_CHARS),
            token_type: bounded(token_type, MAX_LABEL_CHARS),
        }
    }

    /// Names the place this report is about, for the alert raised once per key and place.
    pub fn place(&self) -> String {
        // The first 16 hex digits of the URL's SHA-256 (the contract's hex encoding).
        let mut digest = keygate_contract::key_hash::hash_key(self.url.as_deref().unwrap_or(""));
        digest.truncate(16);
        digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        clock::parse("2026-12-07T10:00:00Z").unwrap()
    }

    #[test]
    fn policies_parse_by_name() {
        assert_eq!(LeakPolicy::parse("revoke"), Some(LeakPolicy::Revoke));
        assert_eq!(LeakPolicy::parse("notify"), Some(LeakPolicy::Notify));
        assert_eq!(LeakPolicy::parse("Revoke"), None);
        assert_eq!(LeakPolicy::Notify.as_str(), "notify");
    }

    #[test]
    fn reported_fields_are_bounded_and_cleaned() {
        let long_url = format!("https://example.com/{}", "a".repeat(5000));
        let leak = KeyLeak::new("github", Some(&long_url), Some("con\ntent"), Some(""), at());
        assert_eq!(leak.url.as_ref().unwrap().chars().count(), MAX_URL_CHARS);
        assert_eq!(leak.source.as_deref(), Some("content"));
        assert_eq!(leak.token_type, None, "empty is absent");
        assert_eq!(leak.reported_at, "2026-12-07T10:00:00Z");
    }

    #[test]
    fn each_place_has_its_own_name() {
        let one = KeyLeak::new("github", Some("https://a"), None, None, at());
        let other = KeyLeak::new("github", Some("https://b"), None, None, at());
        assert_ne!(one.place(), other.place());
        assert_eq!(one.place().len(), 16);
        assert_eq!(
            one.place(),
            KeyLeak::new("manual", Some("https://a"), None, None, at()).place()
        );
    }
}
