//! The audit log: who changed what through the admin API. Entries are written by the
//! transaction that makes the change, so a change and its entry commit or vanish together.

use crate::domain::audit::{Action, Actor, AuditEntry, AuditFilter};
use crate::domain::clock;
use crate::store::sql::{named_params, Result, Row, Tx};
use chrono::{DateTime, Utc};
use serde_json::Value;

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
