//! Proxy and enrollment-token rows, the presence each replica flushes, and what each
//! identified proxy reported (`proxy_usage_hourly`).

use crate::domain::proxies::{EnrollmentToken, Presence, Reported, StoredProxy};
use crate::store::sql::{
    named_params, params, slots, value_rows, Dialect, Params, Result, Row, ToValue, Tx,
};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

const COLUMNS: &str = "id, name, labels, version, credential_hash, credential_last4, \
                       enrolled_with, created_at, enrolled_at, revoked_at, last_seen, \
                       snapshot_version, last_report, report_failing_since, \
                       last_sync, sync_failing_since, snapshot_read_at";

fn from_row(row: &Row) -> Result<StoredProxy> {
    let labels: String = row.get(2)?;
    let snapshot_version: Option<i64> = row.get(11)?;
    Ok(StoredProxy {
        id: row.get(0)?,
        name: row.get(1)?,
        // Written by us from validated labels; an unreadable column reads as none.
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        version: row.get(3)?,
        credential_hash: row.get(4)?,
        credential_last4: row.get(5)?,
        enrolled_with: row.get(6)?,
        created_at: row.get(7)?,
        enrolled_at: row.get(8)?,
        revoked_at: row.get(9)?,
        presence: Presence {
            last_seen: row.get(10)?,
            snapshot_version: snapshot_version.and_then(|v| u64::try_from(v).ok()),
            last_report: row.get(12)?,
            report_failing_since: row.get(13)?,
            last_sync: row.get(14)?,
            sync_failing_since: row.get(15)?,
            snapshot_read_at: row.get(16)?,
        },
    })
}

fn labels_json(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

pub fn insert(tx: &Tx, proxy: &StoredProxy) -> Result<()> {
    tx.execute(
        "INSERT INTO proxies (id, name, labels, version, credential_hash, credential_last4,
                              enrolled_with, created_at, enrolled_at)
         VALUES (:id, :name, :labels, :version, :hash, :last4, :enrolled_with, :created_at,
                 :enrolled_at)",
        named_params! {
            ":id": proxy.id,
            ":name": proxy.name,
            ":labels": labels_json(&proxy.labels),
            ":version": proxy.version,
            ":hash": proxy.credential_hash,
            ":last4": proxy.credential_last4,
            ":enrolled_with": proxy.enrolled_with,
            ":created_at": proxy.created_at,
            ":enrolled_at": proxy.enrolled_at,
        },
    )?;
    Ok(())
}

/// A re-enrollment: the new credential, labels and version under the same identity.
pub fn replace_credential(tx: &Tx, proxy: &StoredProxy) -> Result<()> {
    tx.execute(
        "UPDATE proxies SET labels = :labels, version = :version, credential_hash = :hash,
                credential_last4 = :last4, enrolled_with = :enrolled_with,
                enrolled_at = :enrolled_at
         WHERE id = :id",
        named_params! {
            ":id": proxy.id,
            ":labels": labels_json(&proxy.labels),
            ":version": proxy.version,
            ":hash": proxy.credential_hash,
            ":last4": proxy.credential_last4,
            ":enrolled_with": proxy.enrolled_with,
            ":enrolled_at": proxy.enrolled_at,
        },
    )?;
    Ok(())
}

fn find_by(tx: &Tx, column: &str, value: &str) -> Result<Option<StoredProxy>> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM proxies WHERE {column} = ?1"),
        [value],
        from_row,
    )
}

pub fn find_by_id(tx: &Tx, id: &str) -> Result<Option<StoredProxy>> {
    find_by(tx, "id", id)
}

pub fn find_by_name(tx: &Tx, name: &str) -> Result<Option<StoredProxy>> {
    find_by(tx, "name", name)
}

pub fn find_by_hash(tx: &Tx, hash: &str) -> Result<Option<StoredProxy>> {
    find_by(tx, "credential_hash", hash)
}

/// Every proxy, oldest first.
pub fn list(tx: &Tx) -> Result<Vec<StoredProxy>> {
    tx.query_map(
        &format!("SELECT {COLUMNS} FROM proxies ORDER BY seq"),
        Params::Positional(Vec::new()),
        from_row,
    )
}

/// Which of `ids` are revoked proxies (one statement per 500).
pub fn revoked_among(tx: &Tx, ids: &[&str]) -> Result<std::collections::HashSet<String>> {
    let mut revoked = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let values: Vec<_> = chunk.iter().map(|id| id.to_value()).collect();
        let found: Vec<String> = tx.query_map(
            &format!(
                "SELECT id FROM proxies WHERE revoked_at IS NOT NULL AND id IN ({})",
                slots(1, chunk.len())
            ),
            Params::Positional(values),
            |row| row.get(0),
        )?;
        revoked.extend(found);
    }
    Ok(revoked)
}

pub fn set_revoked_at(tx: &Tx, id: &str, at: DateTime<Utc>) -> Result<usize> {
    tx.execute(
        "UPDATE proxies SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, at],
    )
}

/// Adds what replicas saw (`seen`, by proxy id) to the stored presence: one read of the rows
/// and one write per proxy seen, whatever its call rate.
pub fn merge_presence(tx: &Tx, seen: &BTreeMap<String, Presence>) -> Result<()> {
    let ids: Vec<&str> = seen.keys().map(String::as_str).collect();
    for chunk in ids.chunks(500) {
        let values: Vec<_> = chunk.iter().map(|id| id.to_value()).collect();
        // PostgreSQL: rows locked in id order, so two replicas flushing the same proxy merge
        // one after the other instead of overwriting each other (SQLite has one writer).
        let lock = match tx.dialect() {
            Dialect::Postgres => " ORDER BY id FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let stored = tx.query_map(
            &format!(
                "SELECT {COLUMNS} FROM proxies WHERE id IN ({}){lock}",
                slots(1, chunk.len())
            ),
            Params::Positional(values),
            from_row,
        )?;
        for mut proxy in stored {
            let Some(newer) = seen.get(&proxy.id) else {
                continue;
            };
            proxy.presence.merge(newer);
            let presence = &proxy.presence;
            tx.execute(
                "UPDATE proxies SET last_seen = :last_seen, snapshot_version = :version,
                        last_report = :last_report,
                        report_failing_since = :report_failing_since, last_sync = :last_sync,
                        sync_failing_since = :sync_failing_since,
                        snapshot_read_at = :snapshot_read_at
                 WHERE id = :id",
                named_params! {
                    ":id": proxy.id,
                    ":last_seen": presence.last_seen,
                    ":version": presence.snapshot_version.and_then(|v| i64::try_from(v).ok()),
                    ":last_report": presence.last_report,
                    ":report_failing_since": presence.report_failing_since,
                    ":last_sync": presence.last_sync,
                    ":sync_failing_since": presence.sync_failing_since,
                    ":snapshot_read_at": presence.snapshot_read_at,
                },
            )?;
        }
    }
    Ok(())
}

const TOKEN_COLUMNS: &str = "id, hash, last4, name, created_at, expires_at, revoked_at, enrolled";

fn token_from_row(row: &Row) -> Result<EnrollmentToken> {
    Ok(EnrollmentToken {
        id: row.get(0)?,
        hash: row.get(1)?,
        last4: row.get(2)?,
        name: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        revoked_at: row.get(6)?,
        enrolled: row.get(7)?,
    })
}

pub fn insert_token(tx: &Tx, token: &EnrollmentToken) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO enrollment_tokens ({TOKEN_COLUMNS})
             VALUES (:id, :hash, :last4, :name, :created_at, :expires_at, NULL, 0)"
        ),
        named_params! {
            ":id": token.id,
            ":hash": token.hash,
            ":last4": token.last4,
            ":name": token.name,
            ":created_at": token.created_at,
            ":expires_at": token.expires_at,
        },
    )?;
    Ok(())
}

fn find_token_by(tx: &Tx, column: &str, value: &str) -> Result<Option<EnrollmentToken>> {
    tx.query_opt(
        &format!("SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE {column} = ?1"),
        [value],
        token_from_row,
    )
}

pub fn find_token_by_hash(tx: &Tx, hash: &str) -> Result<Option<EnrollmentToken>> {
    find_token_by(tx, "hash", hash)
}

pub fn find_token_by_id(tx: &Tx, id: &str) -> Result<Option<EnrollmentToken>> {
    find_token_by(tx, "id", id)
}

/// Unrevoked enrollment tokens, oldest first.
pub fn list_tokens(tx: &Tx) -> Result<Vec<EnrollmentToken>> {
    tx.query_map(
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE revoked_at IS NULL ORDER BY seq"
        ),
        Params::Positional(Vec::new()),
        token_from_row,
    )
}

pub fn revoke_token(tx: &Tx, id: &str, at: DateTime<Utc>) -> Result<usize> {
    tx.execute(
        "UPDATE enrollment_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, at],
    )
}

pub fn count_enrollment(tx: &Tx, id: &str) -> Result<()> {
    tx.execute(
        "UPDATE enrollment_tokens SET enrolled = enrolled + 1 WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

/// One row of what a proxy reported: ((proxy id, key id, hour start, code), count).
pub type ReportedSum<'a> = ((&'a str, &'a str, i64, &'a str), i64);

/// Adds `rows` to what the proxies reported.
pub fn add_reported(tx: &Tx, rows: &[ReportedSum<'_>]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut values = Vec::with_capacity(rows.len() * 5);
    for ((proxy_id, key_id, hour_start, code), count) in rows {
        values.extend([
            proxy_id.to_value(),
            key_id.to_value(),
            hour_start.to_value(),
            code.to_value(),
            count.to_value(),
        ]);
    }
    tx.execute(
        &format!(
            "INSERT INTO proxy_usage_hourly (proxy_id, key_id, hour_start, code, count) VALUES {}
             ON CONFLICT (proxy_id, key_id, hour_start, code)
             DO UPDATE SET count = proxy_usage_hourly.count + excluded.count",
            value_rows(5, rows.len())
        ),
        Params::Positional(values),
    )?;
    Ok(())
}

/// What `proxy_id` reported that is still held hourly, oldest hour first.
pub fn reported(tx: &Tx, proxy_id: &str) -> Result<Vec<Reported>> {
    tx.query_map(
        "SELECT key_id, hour_start, code, count FROM proxy_usage_hourly
         WHERE proxy_id = ?1 ORDER BY hour_start, key_id, code",
        [proxy_id],
        |row| {
            Ok(Reported {
                key_id: row.get(0)?,
                hour_start: row.get(1)?,
                code: row.get(2)?,
                count: row.get(3)?,
            })
        },
    )
}

/// Takes what `proxy_id` reported back out of the usage counts (never below zero) and forgets
/// it; the rows taken out.
pub fn discard_reported(tx: &Tx, proxy_id: &str) -> Result<Vec<Reported>> {
    let rows = reported(tx, proxy_id)?;
    for row in &rows {
        tx.execute(
            "UPDATE usage_hourly SET count = CASE WHEN count > ?4 THEN count - ?4 ELSE 0 END
             WHERE key_id = ?1 AND hour_start = ?2 AND code = ?3",
            params![row.key_id, row.hour_start, row.code, row.count],
        )?;
    }
    tx.execute(
        "DELETE FROM proxy_usage_hourly WHERE proxy_id = ?1",
        [proxy_id],
    )?;
    Ok(rows)
}

/// Forgets reported rows of hours before `before` (Unix seconds), as usage rolls them up.
pub fn prune_reported(tx: &Tx, before: i64) -> Result<()> {
    tx.execute(
        "DELETE FROM proxy_usage_hourly WHERE hour_start < ?1",
        [before],
    )?;
    Ok(())
}
