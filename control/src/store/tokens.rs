//! Token rows.

use crate::domain::tokens::{Role, StoredToken};
use crate::store::sql::{named_params, params, Error, Result, Row, Tx};
use chrono::{DateTime, Utc};

const COLUMNS: &str = "id, hash, last4, name, role, team, created_at, expires_at, revoked_at, \
                       last_used_at, rotated_from";

fn from_row(row: &Row) -> Result<StoredToken> {
    let role: String = row.get(4)?;
    Ok(StoredToken {
        id: row.get(0)?,
        hash: row.get(1)?,
        last4: row.get(2)?,
        name: row.get(3)?,
        role: Role::parse(&role).ok_or_else(|| Error::Conversion {
            column: 4,
            message: format!("unknown role {role:?}"),
        })?,
        team: row.get(5)?,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
        revoked_at: row.get(8)?,
        last_used_at: row.get(9)?,
        rotated_from: row.get(10)?,
    })
}

pub fn insert(tx: &Tx, token: &StoredToken) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO tokens ({COLUMNS}) VALUES (:id, :hash, :last4, :name, :role, :team, \
         :created_at, :expires_at, :revoked_at, :last_used_at, :rotated_from)"
        ),
        named_params! {
            ":id": token.id,
            ":hash": token.hash,
            ":last4": token.last4,
            ":name": token.name,
            ":role": token.role.as_str(),
            ":team": token.team,
            ":created_at": token.created_at,
            ":expires_at": token.expires_at,
            ":revoked_at": token.revoked_at,
            ":last_used_at": token.last_used_at,
            ":rotated_from": token.rotated_from,
        },
    )?;
    Ok(())
}

fn find_by(tx: &Tx, column: &str, value: &str) -> Result<Option<StoredToken>> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM tokens WHERE {column} = ?1"),
        [value],
        from_row,
    )
}

/// The token `id`, revoked or not.
pub fn find_by_id(tx: &Tx, id: &str) -> Result<Option<StoredToken>> {
    find_by(tx, "id", id)
}

/// The token whose secret has the digest `hash`, revoked or not.
pub fn find_by_hash(tx: &Tx, hash: &str) -> Result<Option<StoredToken>> {
    find_by(tx, "hash", hash)
}

/// Unrevoked tokens of `team` (every team's when `None`), in creation order.
pub fn list_unrevoked(tx: &Tx, team: Option<&str>) -> Result<Vec<StoredToken>> {
    tx.query_map(
        &format!(
            "SELECT {COLUMNS} FROM tokens
             WHERE revoked_at IS NULL AND (CAST(:team AS TEXT) IS NULL OR team = :team) ORDER BY seq"
        ),
        named_params! { ":team": team },
        from_row,
    )
}

pub fn set_revoked_at(tx: &Tx, id: &str, at: DateTime<Utc>) -> Result<()> {
    tx.execute(
        "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}

pub fn set_expires_at(tx: &Tx, id: &str, at: DateTime<Utc>) -> Result<()> {
    tx.execute(
        "UPDATE tokens SET expires_at = ?2 WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}

pub fn set_last_used_at(tx: &Tx, id: &str, at: DateTime<Utc>) -> Result<()> {
    tx.execute(
        "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}
