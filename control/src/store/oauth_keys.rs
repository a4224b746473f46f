//! OAuth signing-key rows: public JWK and sealed private key (`app/oauth/`).

use crate::store::sql::{named_params, Dialect, Result, Row, Tx};
use chrono::{DateTime, Utc};

/// One signing key as stored. `sealed_private` is AES-256-GCM ciphertext, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub created_at: DateTime<Utc>,
    pub active_from: DateTime<Utc>,
    /// The public key as a JWK (JSON text).
    pub public_jwk: String,
    pub sealed_private: String,
}

fn from_row(row: &Row) -> Result<SigningKeyRow> {
    Ok(SigningKeyRow {
        kid: row.get(0)?,
        created_at: row.get(1)?,
        active_from: row.get(2)?,
        public_jwk: row.get(3)?,
        sealed_private: row.get(4)?,
    })
}

/// Every signing key, oldest first (a handful: the signer, its successor, the retiring).
pub fn list(tx: &Tx) -> Result<Vec<SigningKeyRow>> {
    tx.query_map(
        "SELECT kid, created_at, active_from, public_jwk, sealed_private
         FROM oauth_signing_keys ORDER BY active_from, kid",
        (),
        from_row,
    )
}

pub fn insert(tx: &Tx, key: &SigningKeyRow) -> Result<()> {
    tx.execute(
        "INSERT INTO oauth_signing_keys (kid, created_at, active_from, public_jwk, sealed_private)
         VALUES (:kid, :created_at, :active_from, :public_jwk, :sealed_private)",
        named_params! {
            ":kid": key.kid,
            ":created_at": key.created_at,
            ":active_from": key.active_from,
            ":public_jwk": key.public_jwk,
            ":sealed_private": key.sealed_private,
        },
    )?;
    Ok(())
}

pub fn delete(tx: &Tx, kid: &str) -> Result<()> {
    tx.execute("DELETE FROM oauth_signing_keys WHERE kid = ?1", [kid])?;
    Ok(())
}

/// Serialises signing-key turnover between replicas on PostgreSQL: a transaction-scoped advisory
/// lock, held until commit, so a replica re-reads the keys another one just made (under READ
/// COMMITTED two replicas would each make a first key). SQLite has one writer already.
pub fn lock_turnover(tx: &Tx) -> Result<()> {
    if tx.dialect() == Dialect::Postgres {
        // The lock's key: any number no other lock of this service uses (migrations use theirs).
        tx.query_row(
            "SELECT CAST(1 AS BIGINT) FROM (SELECT pg_advisory_xact_lock(5783352845127385433)) AS locked",
            (),
            |row| row.get::<i64>(0),
        )?;
    }
    Ok(())
}
