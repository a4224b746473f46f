//! Who changed what: the actor of a change, the actions the audit log records, an entry as
//! served, and the fields of a key an entry may show (never a secret or a hash).

use crate::domain::clock;
use crate::domain::keys::StoredKey;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Who makes a change: a management token (never its secret) and the team it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub token_id: String,
    pub token_name: String,
    /// A team token sees and changes only its team's keys, tokens and entries.
    pub team: Option<String>,
}

/// The name the bootstrap token (`KEYGATE_ADMIN_TOKEN`) is recorded under.
pub const BOOTSTRAP: &str = "bootstrap";

impl Actor {
    pub fn bootstrap() -> Actor {
        Actor {
            token_id: BOOTSTRAP.into(),
            token_name: BOOTSTRAP.into(),
            team: None,
        }
    }

    /// Whether something of `team` (`""` or `None`: no team) is visible to this actor.
    pub fn sees(&self, team: Option<&str>) -> bool {
        match &self.team {
            None => true,
            Some(own) => team == Some(own.as_str()),
        }
    }
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    KeyCreate,
    KeyUpdate,
    KeyRotate,
    KeyDelete,
    KeyLeak,
    TokenCreate,
    TokenRevoke,
    TokenRotate,
    PlanCreate,
    PlanUpdate,
    PlanDelete,
    TeamCreate,
    TeamUpdate,
    TeamDelete,
    WebhookCreate,
    WebhookUpdate,
    WebhookRotateSecret,
    WebhookDelete,
    WebhookDisable,
    ProxyCreate,
    ProxyRevoke,
    ProxyReportsDiscard,
    EnrollmentTokenCreate,
    EnrollmentTokenRevoke,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::KeyCreate => "key.create",
            Action::KeyUpdate => "key.update",
            Action::KeyRotate => "key.rotate",
            Action::KeyDelete => "key.delete",
            Action::KeyLeak => "key.leak",
            Action::TokenCreate => "token.create",
            Action::TokenRevoke => "token.revoke",
            Action::TokenRotate => "token.rotate",
            Action::PlanCreate => "plan.create",
            Action::PlanUpdate => "plan.update",
            Action::PlanDelete => "plan.delete",
            Action::TeamCreate => "team.create",
            Action::TeamUpdate => "team.update",
            Action::TeamDelete => "team.delete",
            Action::WebhookCreate => "webhook.create",
            Action::WebhookUpdate => "webhook.update",
            Action::WebhookRotateSecret => "webhook.rotate_secret",
            Action::WebhookDelete => "webhook.delete",
            Action::WebhookDisable => "webhook.disable",
            Action::ProxyCreate => "proxy.create",
            Action::ProxyRevoke => "proxy.revoke",
            Action::ProxyReportsDiscard => "proxy.discard_reports",
            Action::EnrollmentTokenCreate => "enrollment_token.create",
            Action::EnrollmentTokenRevoke => "enrollment_token.revoke",
        }
    }
}

/// One entry as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub token_id: String,
    pub token_name: String,
    pub action: String,
    pub target: String,
    pub team: Option<String>,
    /// The fields the change set, by name; never a secret or a hash.
    pub changes: Value,
}

/// The settings of a key an entry may show: everything but secrets, hashes and bookkeeping.
pub fn key_fields(key: &StoredKey) -> Map<String, Value> {
    let fields = json!({
        "name": key.name,
        "environment": key.environment,
        "team": key.team,
        "scopes": key.scopes,
        "allowed_ips": key.allowed_ips,
        "expires_at": key.expires_at.map(clock::format),
        "active": key.active,
        "plan": key.plan,
        "limits": key.limits,
    });
    match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The fields that differ between `before` and `after`, each as `{"from": …, "to": …}`.
pub fn key_changes(before: &StoredKey, after: &StoredKey) -> Value {
    Value::Object(changed_fields(&key_fields(before), key_fields(after)))
}

/// `{field: {"from", "to"}}` for each field of `after` whose value differs in `before`: what
/// every update's audit entry records (keys, plans, teams, webhooks).
pub fn changed_fields(
    before: &Map<String, Value>,
    after: Map<String, Value>,
) -> Map<String, Value> {
    after
        .into_iter()
        .filter(|(field, value)| before.get(field) != Some(value))
        .map(|(field, value)| {
            let from = before.get(&field).cloned().unwrap_or(Value::Null);
            (field, json!({ "from": from, "to": value }))
        })
        .collect()
}

/// Filters of `GET /v1/audit`.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub target: Option<String>,
    /// Entries at or after this instant (RFC 3339, UTC `Z`).
    pub from: Option<String>,
    /// Only this team's entries (a team token's view).
    pub team: Option<String>,
    /// Entries after this one (the previous page's cursor).
    pub after: i64,
}
