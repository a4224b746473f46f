//! Webhook endpoints and their delivery outbox: the rows an alert adds in the transaction that
//! raised it, the lease a replica takes before sending one, and what each attempt did.

use crate::domain::webhooks::{Delivery, DeliveryStatus, LeasedDelivery, Webhook};
use crate::store::sql::{named_params, Dialect, Error, Params, Result, Row, Tx};
use chrono::{DateTime, Utc};

const COLUMNS: &str = "id, url, description, events, team, secret, previous_secret, \
                       previous_secret_until, enabled, disabled_reason, failing_since, \
                       created_at, updated_at";

fn from_row(row: &Row) -> Result<Webhook> {
    from_row_at(row, 0)
}

fn from_row_at(row: &Row, at: usize) -> Result<Webhook> {
    let events: String = row.get(at + 3)?;
    Ok(Webhook {
        id: row.get(at)?,
        url: row.get(at + 1)?,
        description: row.get(at + 2)?,
        events: serde_json::from_str(&events).map_err(|error| Error::Conversion {
            column: at + 3,
            message: format!("webhook events: {error}"),
        })?,
        team: row.get(at + 4)?,
        secret: row.get(at + 5)?,
        previous_secret: row.get(at + 6)?,
        previous_secret_until: row.get(at + 7)?,
        enabled: row.get(at + 8)?,
        disabled_reason: row.get(at + 9)?,
        failing_since: row.get(at + 10)?,
        created_at: row.get(at + 11)?,
        updated_at: row.get(at + 12)?,
    })
}

fn webhook_params(webhook: &Webhook) -> Params {
    named_params! {
        ":id": webhook.id,
        ":url": webhook.url,
        ":description": webhook.description,
        ":events": serde_json::Value::from(webhook.events.clone()).to_string(),
        ":team": webhook.team,
        ":secret": webhook.secret,
        ":previous_secret": webhook.previous_secret,
        ":previous_secret_until": webhook.previous_secret_until,
        ":enabled": webhook.enabled,
        ":disabled_reason": webhook.disabled_reason,
        ":failing_since": webhook.failing_since,
        ":created_at": webhook.created_at,
        ":updated_at": webhook.updated_at,
    }
}

pub fn insert(tx: &Tx, webhook: &Webhook) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO webhooks ({COLUMNS}) VALUES (:id, :url, :description, :events, :team,
                :secret, :previous_secret, :previous_secret_until, :enabled, :disabled_reason,
                :failing_since, :created_at, :updated_at)"
        ),
        webhook_params(webhook),
    )?;
    Ok(())
}

/// Writes every field of `webhook` over its row.
pub fn update(tx: &Tx, webhook: &Webhook) -> Result<()> {
    tx.execute(
        "UPDATE webhooks SET url = :url, description = :description, events = :events,
            team = :team, secret = :secret, previous_secret = :previous_secret,
            previous_secret_until = :previous_secret_until, enabled = :enabled,
            disabled_reason = :disabled_reason, failing_since = :failing_since,
            created_at = :created_at, updated_at = :updated_at
         WHERE id = :id",
        webhook_params(webhook),
    )?;
    Ok(())
}

pub fn find(tx: &Tx, id: &str) -> Result<Option<Webhook>> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1"),
        [id],
        from_row,
    )
}

/// The endpoint `id`, its row locked until the transaction ends (PostgreSQL; SQLite's one writer
/// serialises anyway): changes read, change and write the whole row, and a concurrent change
/// (an admin's rotation while the sender records an attempt) must not be lost. Every writer of
/// an endpoint and its deliveries locks the endpoint first, so they cannot deadlock.
pub fn find_for_update(tx: &Tx, id: &str) -> Result<Option<Webhook>> {
    let lock = match tx.dialect() {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    };
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1{lock}"),
        [id],
        from_row,
    )
}

/// Every endpoint (only `team`'s when given), oldest first.
pub fn list(tx: &Tx, team: Option<&str>) -> Result<Vec<Webhook>> {
    tx.query_map(
        &format!(
            "SELECT {COLUMNS} FROM webhooks
             WHERE (CAST(:team AS TEXT) IS NULL OR team = :team) ORDER BY seq"
        ),
        named_params! { ":team": team },
        from_row,
    )
}

/// Deletes the endpoint and its deliveries.
pub fn delete(tx: &Tx, id: &str) -> Result<()> {
    tx.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?1", [id])?;
    tx.execute("DELETE FROM webhooks WHERE id = ?1", [id])?;
    Ok(())
}

/// Records a raised event; false (and nothing written) if its occurrence was raised before.
pub fn insert_event(
    tx: &Tx,
    id: &str,
    occurrence: &str,
    kind: &str,
    team: Option<&str>,
    body: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let added = tx.execute(
        "INSERT INTO alert_events (id, occurrence, type, team, at, body)
         VALUES (:id, :occurrence, :type, :team, :at, :body)
         ON CONFLICT (occurrence) DO NOTHING",
        named_params! {
            ":id": id, ":occurrence": occurrence, ":type": kind, ":team": team,
            ":at": now, ":body": body,
        },
    )?;
    Ok(added == 1)
}

/// Queues `event_id` for `webhook_id`, due at once.
pub fn enqueue(tx: &Tx, webhook_id: &str, event_id: &str, now: DateTime<Utc>) -> Result<()> {
    tx.execute(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, status, attempts,
            next_attempt_ms, created_at)
         VALUES (:webhook, :event, 'pending', 0, :due, :now)
         ON CONFLICT (webhook_id, event_id) DO NOTHING",
        named_params! {
            ":webhook": webhook_id, ":event": event_id,
            ":due": now.timestamp_millis(), ":now": now,
        },
    )?;
    Ok(())
}

/// Up to `limit` pending deliveries to enabled endpoints due at `now_ms` that no live lease holds, leased to the
/// caller until `lease_until_ms`. The lease is taken row by row with a conditional update, so
/// when two replicas race for a row, PostgreSQL makes the second re-check it and skip it.
pub fn lease_due(
    tx: &Tx,
    now_ms: i64,
    lease_until_ms: i64,
    limit: usize,
) -> Result<Vec<LeasedDelivery>> {
    let candidates: Vec<i64> = tx.query_map(
        "SELECT seq FROM webhook_deliveries
         WHERE status = 'pending' AND next_attempt_ms <= :now
           AND (lease_until_ms IS NULL OR lease_until_ms <= :now)
           AND webhook_id IN (SELECT id FROM webhooks WHERE enabled = 1)
         ORDER BY next_attempt_ms, seq LIMIT :limit",
        named_params! { ":now": now_ms, ":limit": i64::try_from(limit).unwrap_or(i64::MAX) },
        |row| row.get(0),
    )?;
    let mut leased = Vec::with_capacity(candidates.len());
    for seq in candidates {
        let taken = tx.execute(
            "UPDATE webhook_deliveries SET lease_until_ms = :until
             WHERE seq = :seq AND status = 'pending' AND next_attempt_ms <= :now
               AND (lease_until_ms IS NULL OR lease_until_ms <= :now)",
            named_params! { ":until": lease_until_ms, ":seq": seq, ":now": now_ms },
        )?;
        if taken != 1 {
            continue;
        }
        let row = tx.query_opt(
            &format!(
                "SELECT d.seq, d.event_id, e.body, d.attempts, {}
                 FROM webhook_deliveries d
                 JOIN alert_events e ON e.id = d.event_id
                 JOIN webhooks w ON w.id = d.webhook_id
                 WHERE d.seq = ?1",
                prefixed_columns("w")
            ),
            [seq],
            |row| {
                Ok(LeasedDelivery {
                    lease_until_ms,
                    seq: row.get(0)?,
                    event_id: row.get(1)?,
                    body: row.get(2)?,
                    attempts: row.get(3)?,
                    webhook: from_row_at(row, 4)?,
                })
            },
        )?;
        leased.extend(row);
    }
    Ok(leased)
}

fn prefixed_columns(table: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|column| format!("{table}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one attempt of delivery `seq` did, and when (if ever) it is tried again.
pub struct AttemptRecord<'a> {
    pub seq: i64,
    /// The lease the attempt was made under: the outcome is written only while it holds.
    pub lease_until_ms: i64,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub at: DateTime<Utc>,
    pub answer: Option<u16>,
    pub error: Option<&'a str>,
}

/// Writes an attempt's outcome and releases the lease, if the delivery is still pending under
/// that lease; false (nothing written) when it is not: given up meanwhile (the endpoint was
/// disabled), or the lease lapsed and another replica took it over.
pub fn record_attempt(tx: &Tx, attempt: &AttemptRecord) -> Result<bool> {
    let written = tx.execute(
        "UPDATE webhook_deliveries SET status = :status, attempts = :attempts,
            next_attempt_ms = :next, lease_until_ms = NULL, last_attempt_at = :at,
            last_status = :answer, last_error = :error
         WHERE seq = :seq AND status = 'pending' AND lease_until_ms = :lease",
        named_params! {
            ":status": attempt.status.as_str(),
            ":attempts": attempt.attempts,
            ":next": attempt.next_attempt_ms,
            ":at": attempt.at,
            ":answer": attempt.answer.map(i64::from),
            ":error": attempt.error,
            ":seq": attempt.seq,
            ":lease": attempt.lease_until_ms,
        },
    )?;
    Ok(written == 1)
}

/// How many endpoints name `team`.
pub fn count_of_team(tx: &Tx, team: &str) -> Result<usize> {
    let count: i64 = tx.query_row(
        "SELECT count(*) FROM webhooks WHERE team = ?1",
        [team],
        |row| row.get(0),
    )?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

/// Gives up the pending deliveries of `webhook_id` (it was disabled).
pub fn fail_pending(tx: &Tx, webhook_id: &str) -> Result<usize> {
    tx.execute(
        "UPDATE webhook_deliveries SET status = 'failed', lease_until_ms = NULL
         WHERE webhook_id = ?1 AND status = 'pending'",
        [webhook_id],
    )
}

fn delivery_from_row(row: &Row) -> Result<Delivery> {
    let status: String = row.get(4)?;
    let answer: Option<i64> = row.get(9)?;
    Ok(Delivery {
        seq: row.get(0)?,
        webhook_id: row.get(1)?,
        event_id: row.get(2)?,
        event_type: row.get(3)?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| Error::Conversion {
            column: 4,
            message: format!("unknown delivery status {status:?}"),
        })?,
        attempts: row.get(5)?,
        next_attempt_ms: row.get(6)?,
        created_at: row.get(7)?,
        last_attempt_at: row.get(8)?,
        last_status: answer.and_then(|answer| u16::try_from(answer).ok()),
        last_error: row.get(10)?,
    })
}

/// The newest `limit` deliveries of `webhook_id`, newest first.
pub fn deliveries(tx: &Tx, webhook_id: &str, limit: usize) -> Result<Vec<Delivery>> {
    tx.query_map(
        "SELECT d.seq, d.webhook_id, d.event_id, e.type, d.status, d.attempts,
            d.next_attempt_ms, d.created_at, d.last_attempt_at, d.last_status, d.last_error
         FROM webhook_deliveries d JOIN alert_events e ON e.id = d.event_id
         WHERE d.webhook_id = :webhook ORDER BY d.seq DESC LIMIT :limit",
        named_params! {
            ":webhook": webhook_id,
            ":limit": i64::try_from(limit).unwrap_or(i64::MAX),
        },
        delivery_from_row,
    )
}

/// Forgets events raised before `before` and their deliveries, whatever their state (a
/// delivery still pending then has been retried for longer than an endpoint is kept enabled).
pub fn prune(tx: &Tx, before: DateTime<Utc>) -> Result<usize> {
    tx.execute(
        "DELETE FROM webhook_deliveries WHERE event_id IN
            (SELECT id FROM alert_events WHERE at < ?1)",
        [before],
    )?;
    tx.execute("DELETE FROM alert_events WHERE at < ?1", [before])
}
