//! The audit log: who changed what through the admin API. Entries are written by the
//! transaction that makes the change, so a change and its entry commit or vanish together.

use crate::domain::clock;
use crate::store::keys::StoredKey;
use crate::store::sql::{named_params, Result, Row, Tx};
use chrono::{DateTime, Utc};
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
    TokenCreate,
    TokenRevoke,
    TokenRotate,
    PlanCreate,
    PlanUpdate,
    PlanDelete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::KeyCreate => "key.create",
            Action::KeyUpdate => "key.update",
            Action::KeyRotate => "key.rotate",
            Action::KeyDelete => "key.delete",
            Action::TokenCreate => "token.create",
            Action::TokenRevoke => "token.revoke",
            Action::TokenRotate => "token.rotate",
            Action::PlanCreate => "plan.create",
            Action::PlanUpdate => "plan.update",
            Action::PlanDelete => "plan.delete",
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

/// Appends an entry for `action` on `target` (of `team`) made by `actor` at `now`.
pub fn record(
    tx: &Tx,
    actor: &Actor,
    action: Action,
    target: &str,
    team: Option<&str>,
    changes: &Value,
    now: DateTime<Utc>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO audit_log (at, token_id, token_name, action, target, team, changes)
         VALUES (:at, :token_id, :token_name, :action, :target, :team, :changes)",
        named_params! {
            ":at": clock::format(now),
            ":token_id": actor.token_id,
            ":token_name": actor.token_name,
            ":action": action.as_str(),
            ":target": target,
            ":team": team.filter(|team| !team.is_empty()),
            ":changes": changes.to_string(),
        },
    )?;
    Ok(())
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

/// Up to `limit` entries matching `filter`, oldest first, and whether more follow.
pub fn list(tx: &Tx, filter: &AuditFilter, limit: usize) -> Result<(Vec<AuditEntry>, bool)> {
    let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
    let mut entries = tx.query_map(
        &format!(
            "SELECT seq, at, token_id, token_name, action, target, team, changes
             FROM audit_log
             WHERE seq > :after
               AND (CAST(:target AS TEXT) IS NULL OR target = :target)
               AND (CAST(:team AS TEXT) IS NULL OR team = :team)
               AND (CAST(:from AS TEXT) IS NULL OR {at} >= {from})
             ORDER BY seq LIMIT :fetch",
            at = tx.dialect().instant("at"),
            from = tx.dialect().instant(":from")
        ),
        named_params! {
            ":after": filter.after,
            ":target": filter.target,
            ":team": filter.team,
            ":from": filter.from,
            ":fetch": fetch,
        },
        from_row,
    )?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    Ok((entries, more))
}

fn from_row(row: &Row) -> Result<AuditEntry> {
    let changes: String = row.get(7)?;
    Ok(AuditEntry {
        id: row.get(0)?,
        at: row.get(1)?,
        token_id: row.get(2)?,
        token_name: row.get(3)?,
        action: row.get(4)?,
        target: row.get(5)?,
        team: row.get(6)?,
        changes: serde_json::from_str(&changes).unwrap_or(Value::Null),
    })
}

/// The settings of a key an entry may show: everything but secrets, hashes and bookkeeping.
pub fn key_fields(key: &StoredKey) -> Map<String, Value> {
    let fields = json!({
        "name": key.name,
        "environment": key.environment,
        "team": key.team,
        "scopes": key.scopes,
        "allowed_ips": key.allowed_ips,
        "expires_at": key.expires_at,
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
    let old = key_fields(before);
    let changed: Map<String, Value> = key_fields(after)
        .into_iter()
        .filter(|(field, value)| old.get(field) != Some(value))
        .map(|(field, value)| {
            let from = old.get(&field).cloned().unwrap_or(Value::Null);
            (field, json!({ "from": from, "to": value }))
        })
        .collect();
    Value::Object(changed)
}
