//! Key rows: reading, inserting, updating, tombstoning and paging through them.

use crate::domain::cursor::Position;
use crate::domain::keys::{KeyFilter, KeyStatus, StoredKey};
use crate::domain::leaks::KeyLeak;
use crate::domain::plans::{Environment, LimitOverrides, Plan, PlanLimits};
use crate::store::sql::{
    named_params, slots, Dialect, Error, Params, Result, Row, ToValue, Tx, LIST_CHUNK,
};
use chrono::{DateTime, Utc};

/// Rows of one page and the position to continue after, if more follow.
pub struct RowPage {
    pub rows: Vec<StoredKey>,
    pub next_after: Option<Position>,
}

const COLUMNS: &str = "keys.seq, keys.id, keys.hash, keys.prefix, keys.last4, keys.name, \
    keys.environment, keys.team, keys.scopes, keys.allowed_ips, keys.expires_at, keys.active, \
    keys.plan, keys.limit_per_minute, keys.limit_per_hour, keys.limit_per_day, \
    keys.limit_concurrent, keys.created_at, keys.updated_at, keys.rotated_from, keys.deleted, \
    keys.updated_version, keys.limit_per_month, keys.quota_exceeded_until, keys.last_used_at, \
    plans.per_minute, plans.per_hour, plans.per_day, plans.per_month, plans.concurrent, \
    keys.leak";

/// Joins each key row to its plan's row, whose limits `COLUMNS` reads.
const WITH_PLAN: &str = "LEFT JOIN plans ON plans.name = keys.plan";

fn conversion_error(column: usize, message: String) -> Error {
    Error::Conversion { column, message }
}

fn json_list(row: &Row, column: usize) -> Result<Vec<String>> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|error| conversion_error(column, error.to_string()))
}

fn limit(row: &Row, column: usize) -> Result<Option<u64>> {
    let value: Option<i64> = row.get(column)?;
    Ok(value.and_then(|value| u64::try_from(value).ok()))
}

fn leak(row: &Row, column: usize) -> Result<Option<KeyLeak>> {
    let text: Option<String> = row.get(column)?;
    text.map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|error| conversion_error(column, error.to_string()))
}

fn from_row(row: &Row) -> Result<StoredKey> {
    let environment: String = row.get(6)?;
    let plan: String = row.get(12)?;
    let updated_version: i64 = row.get(21)?;
    Ok(StoredKey {
        seq: row.get(0)?,
        id: row.get(1)?,
        hash: row.get(2)?,
        prefix: row.get(3)?,
        last4: row.get(4)?,
        name: row.get(5)?,
        environment: Environment::parse(&environment)
            .ok_or_else(|| conversion_error(6, format!("unknown environment {environment:?}")))?,
        team: row.get(7)?,
        scopes: json_list(row, 8)?,
        allowed_ips: json_list(row, 9)?,
        expires_at: row.get(10)?,
        active: row.get(11)?,
        plan: Plan::new(plan),
        plan_limits: PlanLimits {
            per_minute: limit(row, 25)?,
            per_hour: limit(row, 26)?,
            per_day: limit(row, 27)?,
            per_month: limit(row, 28)?,
            concurrent: limit(row, 29)?,
        },
        limits: LimitOverrides {
            per_minute: limit(row, 13)?,
            per_hour: limit(row, 14)?,
            per_day: limit(row, 15)?,
            concurrent: limit(row, 16)?,
            per_month: limit(row, 22)?,
        },
        created_at: row.get(17)?,
        updated_at: row.get(18)?,
        rotated_from: row.get(19)?,
        deleted: row.get(20)?,
        updated_version: u64::try_from(updated_version).unwrap_or(0),
        quota_exceeded_until: row.get(23)?,
        last_used_at: row.get(24)?,
        leak: leak(row, 30)?,
    })
}

fn to_json(list: &[String]) -> String {
    serde_json::Value::from(list).to_string()
}

fn to_sql_limit(value: Option<u64>) -> Option<i64> {
    value.and_then(|value| i64::try_from(value).ok())
}

/// Inserts a new key row; returns its sequence number.
pub fn insert(tx: &Tx, key: &StoredKey) -> Result<i64> {
    tx.query_row(
        "INSERT INTO keys (id, hash, prefix, last4, name, environment, team, scopes, allowed_ips,
            expires_at, active, plan, limit_per_minute, limit_per_hour, limit_per_day,
            limit_concurrent, created_at, updated_at, rotated_from, deleted, updated_version,
            limit_per_month, quota_exceeded_until)
         VALUES (:id, :hash, :prefix, :last4, :name, :environment, :team, :scopes, :allowed_ips,
            :expires_at, :active, :plan, :per_minute, :per_hour, :per_day, :concurrent,
            :created_at, :updated_at, :rotated_from, :deleted, :updated_version,
            :per_month, :quota_exceeded_until)
         RETURNING seq",
        named_params! {
        ":id": key.id,
        ":hash": key.hash,
        ":prefix": key.prefix,
        ":last4": key.last4,
        ":name": key.name,
        ":environment": key.environment.as_str(),
        ":team": key.team,
        ":scopes": to_json(&key.scopes),
        ":allowed_ips": to_json(&key.allowed_ips),
        ":expires_at": key.expires_at,
        ":active": key.active,
        ":plan": key.plan.as_str(),
        ":per_minute": to_sql_limit(key.limits.per_minute),
        ":per_hour": to_sql_limit(key.limits.per_hour),
        ":per_day": to_sql_limit(key.limits.per_day),
        ":concurrent": to_sql_limit(key.limits.concurrent),
        ":created_at": key.created_at,
        ":updated_at": key.updated_at,
        ":rotated_from": key.rotated_from,
        ":deleted": key.deleted,
        ":updated_version": sql_version(key.updated_version),
        ":per_month": to_sql_limit(key.limits.per_month),
        ":quota_exceeded_until": key.quota_exceeded_until,
        },
        |row| row.get(0),
    )
}

/// Writes every mutable field of `key` back to its row.
pub fn update(tx: &Tx, key: &StoredKey) -> Result<()> {
    tx.execute(
        "UPDATE keys SET name = :name, team = :team, scopes = :scopes,
            allowed_ips = :allowed_ips, expires_at = :expires_at, active = :active, plan = :plan,
            limit_per_minute = :per_minute, limit_per_hour = :per_hour, limit_per_day = :per_day,
            limit_concurrent = :concurrent, limit_per_month = :per_month,
            updated_at = :updated_at, deleted = :deleted, updated_version = :updated_version,
            quota_exceeded_until = :quota_exceeded_until
         WHERE seq = :seq",
        named_params! {
            ":seq": key.seq,
            ":name": key.name,
            ":team": key.team,
            ":scopes": to_json(&key.scopes),
            ":allowed_ips": to_json(&key.allowed_ips),
            ":expires_at": key.expires_at,
            ":active": key.active,
            ":plan": key.plan.as_str(),
            ":per_minute": to_sql_limit(key.limits.per_minute),
            ":per_hour": to_sql_limit(key.limits.per_hour),
            ":per_day": to_sql_limit(key.limits.per_day),
            ":concurrent": to_sql_limit(key.limits.concurrent),
            ":updated_at": key.updated_at,
            ":deleted": key.deleted,
            ":updated_version": sql_version(key.updated_version),
            ":per_month": to_sql_limit(key.limits.per_month),
            ":quota_exceeded_until": key.quota_exceeded_until,
        },
    )?;
    Ok(())
}

/// Marks the key over quota until `until` (or clears the mark) as the change of `version`.
/// Leaves `updated_at` alone: that records admin changes, and this is not one.
pub fn set_quota_mark(tx: &Tx, seq: i64, until: Option<DateTime<Utc>>, version: u64) -> Result<()> {
    tx.execute(
        "UPDATE keys SET quota_exceeded_until = :until, updated_version = :version
         WHERE seq = :seq",
        named_params! {
            ":seq": seq,
            ":until": until,
            ":version": sql_version(version),
        },
    )?;
    Ok(())
}

/// Moves the `last_used_at` of the keys `seqs` on to `hour` (an hour start) unless it is
/// already later. Leaves `updated_version` alone: the snapshot does not carry it.
pub fn note_used(tx: &Tx, seqs: &[i64], hour: DateTime<Utc>) -> Result<()> {
    for chunk in seqs.chunks(LIST_CHUNK) {
        let mut values = vec![hour.to_value()];
        values.extend(chunk.iter().map(ToValue::to_value));
        tx.execute(
            &format!(
                "UPDATE keys SET last_used_at = ?1
                 WHERE seq IN ({}) AND (last_used_at IS NULL OR last_used_at < ?1)",
                slots(2, chunk.len())
            ),
            Params::Positional(values),
        )?;
    }
    Ok(())
}

/// Stamps every live key on `plan` with `version`: their effective limits changed with it.
pub fn stamp_plan(tx: &Tx, plan: &str, version: u64) -> Result<()> {
    tx.execute(
        "UPDATE keys SET updated_version = :version WHERE plan = :name AND deleted = 0",
        named_params! { ":version": sql_version(version), ":name": plan },
    )?;
    Ok(())
}

/// How many live keys are on `plan`.
pub fn live_count_on_plan(tx: &Tx, plan: &str) -> Result<usize> {
    let count: i64 = tx.query_row(
        "SELECT count(*) FROM keys WHERE plan = ?1 AND deleted = 0",
        [plan],
        |row| row.get(0),
    )?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

/// The live (not deleted) keys on `plan`.
pub fn on_plan(tx: &Tx, plan: &str) -> Result<Vec<StoredKey>> {
    tx.query_map(
        &format!(
            "SELECT {COLUMNS} FROM keys {WITH_PLAN} WHERE keys.plan = ?1 AND keys.deleted = 0"
        ),
        [plan],
        from_row,
    )
}

/// The live (not deleted) keys of `team`, oldest first.
pub fn of_team(tx: &Tx, team: &str) -> Result<Vec<StoredKey>> {
    first_of_team(tx, team, i64::MAX)
}

/// The oldest `limit` live keys of `team`.
pub fn first_of_team(tx: &Tx, team: &str, limit: i64) -> Result<Vec<StoredKey>> {
    tx.query_map(
        &format!(
            "SELECT {COLUMNS} FROM keys {WITH_PLAN}
             WHERE keys.team = :team AND keys.deleted = 0 ORDER BY keys.seq LIMIT :limit"
        ),
        named_params! { ":team": team, ":limit": limit },
        from_row,
    )
}

/// Records the first report of `seq`'s leak; a key already reported keeps its first. Not part
/// of the snapshot, so no version moves. Returns whether this was the first.
pub fn record_leak(tx: &Tx, seq: i64, leak: &KeyLeak) -> Result<bool> {
    let text = serde_json::to_string(leak).map_err(|error| Error::Schema(error.to_string()))?;
    let changed = tx.execute(
        "UPDATE keys SET leak = :leak WHERE seq = :seq AND leak IS NULL",
        named_params! { ":leak": text, ":seq": seq },
    )?;
    Ok(changed > 0)
}

/// The live keys whose hash is one of `hashes` (through the live-by-hash index).
pub fn live_with_hashes(tx: &Tx, hashes: &[&str]) -> Result<Vec<StoredKey>> {
    live_where_in(tx, "keys.hash", hashes)
}

/// The live key whose hash begins with `tag` (a fleet key tag: its first 32 hex digits),
/// through the live-by-hash index: hashes from the tag up to the tag followed by `g` (every
/// hash digit sorts below it).
pub fn live_with_tag(tx: &Tx, tag: &str) -> Result<Option<StoredKey>> {
    let hash = match tx.dialect() {
        Dialect::Sqlite => "keys.hash",
        Dialect::Postgres => "keys.hash COLLATE \"C\"",
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM keys {WITH_PLAN}
         WHERE keys.deleted = 0 AND {hash} > :tag AND {hash} < :end ORDER BY {hash} LIMIT 1"
    );
    let end = format!("{tag}g");
    tx.query_opt(
        &sql,
        named_params! { ":tag": tag, ":end": end.as_str() },
        from_row,
    )
}

/// The live keys whose `column` is one of `values`, a chunk of values per query.
fn live_where_in(tx: &Tx, column: &'static str, values: &[&str]) -> Result<Vec<StoredKey>> {
    let mut found = Vec::with_capacity(values.len());
    for chunk in values.chunks(LIST_CHUNK) {
        found.extend(tx.query_map(
            &format!(
                "SELECT {COLUMNS} FROM keys {WITH_PLAN}
                 WHERE {column} IN ({}) AND keys.deleted = 0",
                slots(1, chunk.len())
            ),
            Params::Positional(chunk.iter().map(ToValue::to_value).collect()),
            from_row,
        )?);
    }
    Ok(found)
}

/// The key with this id, tombstones included.
pub fn find(tx: &Tx, id: &str) -> Result<Option<StoredKey>> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM keys {WITH_PLAN} WHERE keys.id = ?1"),
        [id],
        from_row,
    )
}

/// The live (not deleted) keys among `ids`, in no particular order; unknown ids are skipped.
pub fn find_live(tx: &Tx, ids: &[&str]) -> Result<Vec<StoredKey>> {
    live_where_in(tx, "keys.id", ids)
}

fn page(
    tx: &Tx,
    sql: &str,
    params: Params,
    limit: usize,
    position_of: fn(&StoredKey) -> Position,
) -> Result<RowPage> {
    let mut rows = tx.query_map(sql, params, from_row)?;
    let next_after = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(position_of)
    } else {
        None
    };
    Ok(RowPage { rows, next_after })
}

fn by_seq(row: &StoredKey) -> Position {
    Position {
        version: 0,
        seq: row.seq,
    }
}

fn by_version_then_seq(row: &StoredKey) -> Position {
    Position {
        version: row.updated_version,
        seq: row.seq,
    }
}

fn sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

fn fetch_count(limit: usize) -> i64 {
    // One row more than asked tells whether another page follows.
    i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
}

/// Non-deleted keys matching `filter`, in creation order, after sequence number `after`.
pub fn list(tx: &Tx, filter: &KeyFilter, after: Position, limit: usize) -> Result<RowPage> {
    let sql = format!(
        "SELECT {COLUMNS} FROM keys {WITH_PLAN}
         WHERE deleted = 0 AND seq > :after
           AND (CAST(:team AS TEXT) IS NULL OR team = :team)
           AND (CAST(:environment AS TEXT) IS NULL OR environment = :environment)
           AND (CAST(:active AS BIGINT) IS NULL OR active = :active)
           AND (CAST(:status AS TEXT) IS NULL
                OR (:status = 'inactive' AND active = 0)
                OR (:status = 'expired' AND active = 1 AND {expired})
                OR (:status = 'active' AND active = 1 AND NOT {expired}))
         ORDER BY seq LIMIT :fetch",
        // Compared as instants, not as text: `…:00.5Z` sorts before `…:00Z`.
        expired = format!(
            "(expires_at IS NOT NULL AND {} <= {})",
            tx.dialect().instant("expires_at"),
            tx.dialect().instant("coalesce(:now, 'now')"),
        )
    );
    page(
        tx,
        &sql,
        named_params! {
            ":after": after.seq,
            ":team": filter.team,
            ":environment": filter.environment.map(Environment::as_str),
            ":active": filter.active,
            ":status": filter.status.map(KeyStatus::as_str),
            ":now": filter.now,
            ":fetch": fetch_count(limit),
        },
        limit,
        by_seq,
    )
}

/// Every non-deleted key, for a full snapshot page.
pub fn all_live(tx: &Tx, after: Position, limit: usize) -> Result<RowPage> {
    let sql = format!(
        "SELECT {COLUMNS} FROM keys {WITH_PLAN}
         WHERE deleted = 0 AND seq > :after ORDER BY seq LIMIT :fetch"
    );
    page(
        tx,
        &sql,
        named_params! { ":after": after.seq, ":fetch": fetch_count(limit) },
        limit,
        by_seq,
    )
}

/// Up to `limit` live keys whose hash sorts after `after` (all when `None`), in ascending hash
/// order: full snapshots in the compact encoding are listed this way (docs/snapshot.md), so a
/// page can start at a hash on any replica. Served by the `keys_live_by_hash` index.
pub fn live_by_hash(tx: &Tx, after: Option<&str>, limit: usize) -> Result<Vec<StoredKey>> {
    // Lowercase hex compared byte by byte sorts as the digests do; PostgreSQL needs the "C"
    // collation for that (its default follows the locale), and its index is built with it.
    let hash = match tx.dialect() {
        Dialect::Sqlite => "keys.hash",
        Dialect::Postgres => "keys.hash COLLATE \"C\"",
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM keys {WITH_PLAN}
         WHERE keys.deleted = 0 AND {hash} > :after ORDER BY {hash} LIMIT :limit"
    );
    tx.query_map(
        &sql,
        named_params! {
            ":after": after.unwrap_or(""),
            ":limit": i64::try_from(limit).unwrap_or(i64::MAX),
        },
        from_row,
    )
}

/// Whether more than `count` keys are live, without counting them all.
pub fn live_count_exceeds(tx: &Tx, count: usize) -> Result<bool> {
    let rows = tx.query_map(
        "SELECT seq FROM keys WHERE deleted = 0 ORDER BY seq LIMIT 1 OFFSET :skip",
        named_params! { ":skip": i64::try_from(count).unwrap_or(i64::MAX) },
        |row| row.get::<i64>(0),
    )?;
    Ok(!rows.is_empty())
}

/// Keys and tombstones changed after `since`, for a delta page. Ordered by version, then
/// sequence number, so the version index serves every page without sorting; a row changed
/// while a client pages moves to a later page rather than being missed.
pub fn changed_since(tx: &Tx, since: u64, after: Position, limit: usize) -> Result<RowPage> {
    // Rows after `start` in (version, seq) order, as two index range scans: the rest of
    // `start`'s version, then every later version.
    let start = after.max(Position {
        version: since,
        seq: i64::MAX,
    });
    // SQLite's planner would otherwise pick the primary key and sort; PostgreSQL needs no hint.
    let by_version = match tx.dialect() {
        Dialect::Sqlite => "INDEXED BY keys_by_updated_version",
        Dialect::Postgres => "",
    };
    let sql = format!(
        "SELECT * FROM (
             SELECT {COLUMNS} FROM keys {by_version} {WITH_PLAN}
             WHERE updated_version = :start_version AND seq > :start_seq
             ORDER BY seq LIMIT :fetch) AS rest_of_version
         UNION ALL
         SELECT * FROM (
             SELECT {COLUMNS} FROM keys {by_version} {WITH_PLAN}
             WHERE updated_version > :start_version
             ORDER BY updated_version, seq LIMIT :fetch) AS later_versions
         ORDER BY updated_version, seq LIMIT :fetch"
    );
    page(
        tx,
        &sql,
        named_params! {
            ":start_version": sql_version(start.version),
            ":start_seq": start.seq,
            ":fetch": fetch_count(limit),
        },
        limit,
        by_version_then_seq,
    )
}
