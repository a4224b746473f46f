//! What the alert evaluation reads: rate-limit refusals per key and minute of arrival, and the
//! keys whose expiry is near.

use crate::domain::alerts::REFUSAL_WINDOW_MINUTES;
use crate::store::sql::{named_params, Result, Tx};
use chrono::{DateTime, Utc};

/// Adds `count` refusals of `key_id` in the minute starting `minute_start` (Unix seconds).
pub fn add_refusals(tx: &Tx, key_id: &str, minute_start: i64, count: u64) -> Result<()> {
    tx.execute(
        "INSERT INTO alert_refusals (key_id, minute_start, count) VALUES (:key, :minute, :count)
         ON CONFLICT (key_id, minute_start)
         DO UPDATE SET count = alert_refusals.count + excluded.count",
        named_params! {
            ":key": key_id, ":minute": minute_start,
            ":count": i64::try_from(count).unwrap_or(i64::MAX),
        },
    )?;
    Ok(())
}

/// `key_id`'s refusals in the window ending with the minute of `now`.
pub fn refusals_in_window(tx: &Tx, key_id: &str, now: DateTime<Utc>) -> Result<u64> {
    let minute = now.timestamp().div_euclid(60) * 60;
    let sum: i64 = tx.query_row(
        "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM alert_refusals
         WHERE key_id = :key AND minute_start > :from",
        named_params! { ":key": key_id, ":from": minute - REFUSAL_WINDOW_MINUTES * 60 },
        |row| row.get(0),
    )?;
    Ok(u64::try_from(sum).unwrap_or(0))
}

/// Forgets refusal counts older than the window.
pub fn prune_refusals(tx: &Tx, now: DateTime<Utc>) -> Result<usize> {
    tx.execute(
        "DELETE FROM alert_refusals WHERE minute_start <= ?1",
        [now.timestamp() - REFUSAL_WINDOW_MINUTES * 60 - 60],
    )
}

/// A key the expiry sweep looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryRow {
    pub id: String,
    pub name: String,
    pub team: String,
    pub expires_at: DateTime<Utc>,
}

/// Live, active keys expiring in `(from, to]` that were not rotated out (a successor names them),
/// by the expiry index.
pub fn expiring(tx: &Tx, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<ExpiryRow>> {
    tx.query_map(
        "SELECT id, name, team, expires_at FROM keys
         WHERE expires_at > :from AND expires_at <= :to AND deleted = 0 AND active = 1
           AND NOT EXISTS (SELECT 1 FROM keys successor WHERE successor.rotated_from = keys.id)
         ORDER BY expires_at",
        named_params! { ":from": from, ":to": to },
        |row| {
            Ok(ExpiryRow {
                id: row.get(0)?,
                name: row.get(1)?,
                team: row.get(2)?,
                expires_at: row.get(3)?,
            })
        },
    )
}
