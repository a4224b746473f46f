//! What the admin API answers, as the service sends it and the CLI reads it back: keys (their
//! settings and overrides, never the hash), tokens, audit pages, plans and usage.

use crate::domain::audit::AuditEntry;
use crate::domain::clock;
use crate::domain::headroom::LimitUse;
use crate::domain::keys::MintedKey;
use crate::domain::keys::StoredKey;
use crate::domain::leaks::KeyLeak;
use crate::domain::plans::PlanDefinition;
use crate::domain::plans::{effective_admin_limits, AdminLimits, Environment};
use crate::domain::plans::{LimitOverrides, Plan};
use crate::domain::quota::mark_in_force;
use crate::domain::tokens::{MintedToken, Role, StoredToken};
use crate::domain::usage_range::{Bucket, Counts, Granularity};
use crate::domain::usage_report::KeyEvent;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// `POST /v1/keys/leaked`: the key as it is now, the policy the service applied and whether
/// this report deactivated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakReportView {
    pub key: KeyView,
    pub policy: String,
    pub deactivated: bool,
}

/// A key as the admin API shows it.
/// The CLI reads the same type back (`client/answers.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub environment: Environment,
    pub team: String,
    pub prefix: String,
    pub last4: String,
    pub scopes: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub expires_at: Option<String>,
    pub active: bool,
    pub plan: Plan,
    pub limits: LimitOverrides,
    pub effective_limits: AdminLimits,
    /// Until when the key is over its fleet-wide quota; null when it is not.
    pub quota_exceeded_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub rotated_from: Option<String>,
    /// Start of the newest UTC hour usage reports counted allowed requests in; null before
    /// any. Known as late as the proxies' report interval, to the hour.
    #[serde(default)]
    pub last_used_at: Option<String>,
    /// The first report of this key found in public (docs/security.md, "Leaked keys"); null
    /// for a key never reported.
    #[serde(default)]
    pub leak: Option<KeyLeak>,
    /// The secret; present only in the response that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl From<StoredKey> for KeyView {
    fn from(key: StoredKey) -> Self {
        KeyView::at(key, clock::now())
    }
}

impl KeyView {
    /// The key as shown at `now` (a quota mark that has passed shows as null).
    pub fn at(key: StoredKey, now: DateTime<Utc>) -> Self {
        KeyView {
            effective_limits: effective_admin_limits(&key.plan_limits, &key.limits),
            quota_exceeded_until: mark_in_force(key.quota_exceeded_until, now).map(clock::format),
            id: key.id,
            name: key.name,
            environment: key.environment,
            team: key.team,
            prefix: key.prefix,
            last4: key.last4,
            scopes: key.scopes,
            allowed_ips: key.allowed_ips,
            expires_at: key.expires_at.map(clock::format),
            active: key.active,
            plan: key.plan,
            limits: key.limits,
            created_at: clock::format(key.created_at),
            updated_at: clock::format(key.updated_at),
            rotated_from: key.rotated_from,
            last_used_at: key.last_used_at.map(clock::format),
            leak: key.leak,
            key: None,
        }
    }
}

impl From<MintedKey> for KeyView {
    fn from(minted: MintedKey) -> Self {
        KeyView {
            key: Some(minted.secret),
            ..KeyView::from(minted.key)
        }
    }
}

/// One page of `GET /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
    pub next_cursor: Option<String>,
}

/// A token as the admin API shows it; never its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub team: Option<String>,
    pub last4: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub rotated_from: Option<String>,
    /// The secret; present only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<StoredToken> for TokenView {
    fn from(token: StoredToken) -> Self {
        TokenView {
            id: token.id,
            name: token.name,
            role: token.role,
            team: token.team,
            last4: token.last4,
            created_at: clock::format(token.created_at),
            last_used_at: token.last_used_at.map(clock::format),
            expires_at: token.expires_at.map(clock::format),
            rotated_from: token.rotated_from,
            token: None,
        }
    }
}

impl From<MintedToken> for TokenView {
    fn from(minted: MintedToken) -> Self {
        TokenView {
            token: Some(minted.secret),
            ..TokenView::from(minted.token)
        }
    }
}

/// `GET /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// One page of `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// The answer of `GET /v1/plans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanList {
    pub plans: Vec<PlanDefinition>,
}

/// `GET /v1/keys/{id}/usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyUsage {
    pub key_id: String,
    pub granularity: Granularity,
    pub from: String,
    pub to: String,
    pub buckets: Vec<Bucket>,
    pub totals: Counts,
}

/// `GET /v1/usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamUsage {
    /// The team summed over; null for every key.
    pub team: Option<String>,
    pub granularity: Granularity,
    pub from: String,
    pub to: String,
    pub buckets: Vec<Bucket>,
    pub totals: Counts,
}

/// `GET /v1/keys/{id}/events`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEvents {
    pub key_id: String,
    pub events: Vec<EventView>,
}

/// One event as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// RFC 3339 with milliseconds: when the request started.
    pub at: String,
    /// The error code of a denial, or `5xx` / `none` for a failed upstream answer.
    pub outcome: String,
    /// The HTTP status the client got (0: none).
    pub status: u32,
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub proxy_id: String,
}

impl From<KeyEvent> for EventView {
    fn from(event: KeyEvent) -> Self {
        EventView {
            at: DateTime::from_timestamp_millis(event.at_ms)
                .map(|at| at.to_rfc3339_opts(SecondsFormat::Millis, true))
                .unwrap_or_default(),
            outcome: event.outcome,
            status: event.status,
            method: event.method,
            path: event.path,
            client_ip: event.client_ip,
            request_id: event.request_id,
            proxy_id: event.proxy_id,
        }
    }
}

/// `GET /v1/keys/{id}/limits`: headroom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    pub key_id: String,
    /// The instant the use was read at.
    pub at: String,
    /// Each limit in force, the rate windows first: `per_minute`, `per_hour`, `per_day`
    /// (sliding, from the fleet counts), `quota_day`, `quota_month` (UTC periods).
    pub limits: Vec<LimitUse>,
    /// Requests in flight at once per Envoy, if limited (each Envoy counts its own).
    pub concurrent: Option<u64>,
    /// Until when the key is over a quota (the proxies answer 429 QUOTA_EXCEEDED).
    pub quota_exceeded_until: Option<String>,
}
