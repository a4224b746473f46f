//! Bodies of the proxy identity routes (`/v1/proxies`, `/v1/enrollment-tokens`): the fleet
//! list, a proxy's reported usage, enrollment tokens, and the requests that make them.

use crate::domain::clock;
use crate::domain::proxies::Reported;
use crate::domain::proxies::{EnrollmentToken, StoredProxy};
use crate::wire::validate;
use chrono::{DateTime, Duration, Utc};
use keygate_contract::enrollment::{self, EnrollRequest};
use keygate_contract::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A post the proxy made lately: when the last one was counted, and since when they fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostHealth {
    pub at: Option<String>,
    pub failing_since: Option<String>,
}

/// One proxy of `GET /v1/proxies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyView {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    /// `enrollment` (with `enrolled_with`) or `issued` (by an admin).
    pub credential: String,
    pub credential_last4: String,
    pub enrolled_with: Option<String>,
    pub first_seen: Option<String>,
    pub created_at: String,
    pub enrolled_at: String,
    pub last_seen: Option<String>,
    pub snapshot_version: Option<u64>,
    pub lag_versions: u64,
    /// Seconds it has not held the newest snapshot version (0: it does).
    pub lag_seconds: i64,
    pub last_report: PostHealth,
    pub last_sync: PostHealth,
    /// `live`, `stale` (not seen for longer than `--proxy-stale-after`) or `revoked`.
    pub state: String,
    pub revoked_at: Option<String>,
    /// The credential; present only in the answer that issued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_secret: Option<String>,
}

impl ProxyView {
    /// `behind_since(v)`: when the first version after v was published (the feed's clock).
    pub fn new(
        proxy: StoredProxy,
        head: u64,
        now: DateTime<Utc>,
        stale_after: Duration,
        behind_since: impl Fn(u64) -> Option<DateTime<Utc>>,
    ) -> Self {
        let presence = &proxy.presence;
        ProxyView {
            state: proxy.state(now, stale_after).as_str().to_string(),
            lag_versions: proxy.lag_versions(head),
            lag_seconds: proxy.lag(head, now, behind_since).num_seconds(),
            credential: if proxy.enrolled_with.is_some() {
                "enrollment"
            } else {
                "issued"
            }
            .into(),
            first_seen: presence.last_seen.map(|_| clock::format(proxy.created_at)),
            last_seen: presence.last_seen.map(clock::format),
            snapshot_version: presence.snapshot_version,
            last_report: PostHealth {
                at: presence.last_report.map(clock::format),
                failing_since: presence.report_failing_since.map(clock::format),
            },
            last_sync: PostHealth {
                at: presence.last_sync.map(clock::format),
                failing_since: presence.sync_failing_since.map(clock::format),
            },
            revoked_at: proxy.revoked_at.map(clock::format),
            created_at: clock::format(proxy.created_at),
            enrolled_at: clock::format(proxy.enrolled_at),
            id: proxy.id,
            name: proxy.name,
            labels: proxy.labels,
            version: proxy.version,
            credential_last4: proxy.credential_last4,
            enrolled_with: proxy.enrolled_with,
            credential_secret: None,
        }
    }
}

/// `GET /v1/proxies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyList {
    /// The newest snapshot version, which `lag_versions` counts from.
    pub snapshot_version: u64,
    pub proxies: Vec<ProxyView>,
}

/// Body of `POST /v1/proxies`: a proxy (or a deployment sharing one credential) an admin
/// issues a credential for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueProxyRequest {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl IssueProxyRequest {
    pub fn validate(self) -> Result<EnrollRequest, FieldError> {
        let request = EnrollRequest {
            name: self.name,
            labels: self.labels,
            version: String::new(),
        };
        enrollment::validate(&request)?;
        Ok(request)
    }
}

/// What a proxy reported, per key, hour and code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedRow {
    pub key_id: String,
    pub hour: String,
    /// `allowed`, a denial code, or a detail code as usage rows hold them.
    pub code: String,
    pub count: i64,
}

impl From<Reported> for ReportedRow {
    fn from(row: Reported) -> Self {
        ReportedRow {
            hour: DateTime::from_timestamp(row.hour_start, 0)
                .map(clock::format)
                .unwrap_or_default(),
            key_id: row.key_id,
            code: row.code,
            count: row.count,
        }
    }
}

/// `GET` and `DELETE /v1/proxies/{id}/reports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedUsage {
    pub proxy_id: String,
    /// Allowed requests over the rows.
    pub allowed: i64,
    pub rows: Vec<ReportedRow>,
}

impl ReportedUsage {
    pub fn new(proxy_id: String, rows: Vec<Reported>) -> Self {
        ReportedUsage {
            proxy_id,
            allowed: rows
                .iter()
                .filter(|row| row.code == crate::domain::usage_report::ALLOWED_CODE)
                .map(|row| row.count)
                .sum(),
            rows: rows.into_iter().map(ReportedRow::from).collect(),
        }
    }
}

/// One enrollment token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentTokenView {
    pub id: String,
    pub name: String,
    pub last4: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    /// Enrollments made with it.
    pub enrolled: i64,
    /// The secret; present only in the answer that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<EnrollmentToken> for EnrollmentTokenView {
    fn from(token: EnrollmentToken) -> Self {
        EnrollmentTokenView {
            id: token.id,
            name: token.name,
            last4: token.last4,
            created_at: clock::format(token.created_at),
            expires_at: token.expires_at.map(clock::format),
            enrolled: token.enrolled,
            token: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentTokenList {
    pub enrollment_tokens: Vec<EnrollmentTokenView>,
}

/// Body of `POST /v1/enrollment-tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentTokenRequest {
    pub name: String,
    #[serde(default)]
    pub expires_at: Option<String>,
}

impl CreateEnrollmentTokenRequest {
    pub fn validate(
        self,
        now: DateTime<Utc>,
    ) -> Result<(String, Option<DateTime<Utc>>), FieldError> {
        let name = validate::name(self.name)?;
        let expires_at = self
            .expires_at
            .map(|text| validate::expires_at(&text, now))
            .transpose()?;
        Ok((name, expires_at))
    }
}
