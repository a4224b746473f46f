//! The OAuth 2.0 authorization server (client credentials): authenticates a key as a client,
//! signs its access token with the current signing key, publishes the key set, and turns the
//! signing keys over (`domain::oauth::KeySchedule`). docs/security.md, "OAuth 2.0".
//!
//! Cost: one indexed key read and one signing-key read per token (a write only when a key turns
//! over); per key set read, one read of a handful of rows. Nothing per proxy.

pub mod failures;
pub mod seal;
pub mod signing;

use crate::domain::oauth::{
    granted_scopes, AccessClaims, ErrorCode, KeySchedule, KeyTimes, OAuthError, TokenRequest,
};
use crate::store::oauth_keys::{self, SigningKeyRow};
use crate::store::{keys, sql, Store};
use chrono::{DateTime, Utc};
use keygate_contract::access_token::{scope_claim, ALL_KEY_SCOPES};
use keygate_contract::key_hash::hash_key;
use seal::SealingKey;
use serde_json::Value;
use subtle::ConstantTimeEq;

/// What the service is as an authorization server.
#[derive(Debug)]
pub struct OAuthSettings {
    /// `iss` of every token, and where the metadata says the endpoints are.
    pub issuer: String,
    /// `aud` of every token: what Envoy's `jwt_authn` checks.
    pub audience: String,
    pub schedule: KeySchedule,
}

#[derive(Debug)]
pub struct OAuthServer {
    pub settings: OAuthSettings,
    sealing: SealingKey,
}

/// Why no token was issued.
#[derive(Debug)]
pub enum IssueError {
    /// The client's fault, answered as RFC 6749 §5.2 says.
    Refused(OAuthError),
    /// Ours: the database, the sealing key, signing.
    Internal(String),
}

impl From<sql::Error> for IssueError {
    fn from(error: sql::Error) -> Self {
        IssueError::Internal(format!("database: {error}"))
    }
}

/// An issued token, as the token response carries it.
#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: Option<String>,
}

fn times(rows: &[SigningKeyRow]) -> Vec<KeyTimes> {
    rows.iter()
        .map(|row| KeyTimes {
            kid: row.kid.clone(),
            active_from: row.active_from,
        })
        .collect()
}

impl OAuthServer {
    pub fn new(settings: OAuthSettings, sealing: SealingKey) -> OAuthServer {
        OAuthServer { settings, sealing }
    }

    /// The signing keys after turning them over if due: a first key signs at once; a successor
    /// is published `publish_ahead` before it signs; keys no token can still need are deleted.
    pub fn signing_keys(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Vec<SigningKeyRow>, IssueError> {
        let schedule = self.settings.schedule;
        let rows = store.read(oauth_keys::list)?;
        let current = times(&rows);
        let stale = current
            .iter()
            .any(|key| !schedule.published(&current, key, now));
        if !stale && !schedule.rotation_due(&current, now) {
            return Ok(rows);
        }
        store.write_outside_feed(|tx| {
            // Replicas turning keys over at once take turns, so only one makes each key.
            oauth_keys::lock_turnover(tx)?;
            let mut rows = oauth_keys::list(tx)?;
            let current = times(&rows);
            if schedule.rotation_due(&current, now) {
                let first = schedule.signer(&current, now).is_none();
                let active_from = if first {
                    now
                } else {
                    now + schedule.publish_ahead
                };
                let row = self.new_key(now, active_from)?;
                oauth_keys::insert(tx, &row)?;
                rows.push(row);
            }
            let current = times(&rows);
            let mut kept = Vec::with_capacity(rows.len());
            for row in rows {
                let published = current
                    .iter()
                    .find(|key| key.kid == row.kid)
                    .is_some_and(|key| schedule.published(&current, key, now));
                if published {
                    kept.push(row);
                } else {
                    oauth_keys::delete(tx, &row.kid)?;
                }
            }
            Ok(kept)
        })
    }

    /// Checks at start that the sealing key opens the signing key in use, so a wrong
    /// `KEYGATE_OAUTH_SEALING_KEY` stops the service with a clear message instead of failing
    /// every token request. The published keys are returned.
    pub fn check(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Vec<SigningKeyRow>, IssueError> {
        let rows = self.signing_keys(store, now)?;
        if self.settings.schedule.signer(&times(&rows), now).is_some() {
            self.open_signer(&rows, now)?;
        }
        Ok(rows)
    }

    fn new_key(
        &self,
        now: DateTime<Utc>,
        active_from: DateTime<Utc>,
    ) -> Result<SigningKeyRow, IssueError> {
        let kid = signing::random_id().map_err(IssueError::Internal)?;
        let pair = signing::generate(&kid).map_err(IssueError::Internal)?;
        let sealed_private = self
            .sealing
            .seal(&pair.pkcs8, &kid)
            .map_err(IssueError::Internal)?;
        Ok(SigningKeyRow {
            kid,
            created_at: now,
            active_from,
            public_jwk: pair.public_jwk.to_string(),
            sealed_private,
        })
    }

    /// The published key set (`/.well-known/jwks.json`): the signer, its waiting successor and
    /// the keys whose tokens may still be valid.
    pub fn jwks(&self, store: &Store, now: DateTime<Utc>) -> Result<Vec<Value>, IssueError> {
        let rows = self.signing_keys(store, now)?;
        rows.iter()
            .map(|row| {
                serde_json::from_str(&row.public_jwk).map_err(|error| {
                    IssueError::Internal(format!("stored JWK {}: {error}", row.kid))
                })
            })
            .collect()
    }

    /// The row of the key that signs now among `rows`, and its private key opened.
    fn open_signer<'r>(
        &self,
        rows: &'r [SigningKeyRow],
        now: DateTime<Utc>,
    ) -> Result<(&'r SigningKeyRow, Vec<u8>), IssueError> {
        let schedule = times(rows);
        let signer = self
            .settings
            .schedule
            .signer(&schedule, now)
            .ok_or_else(|| IssueError::Internal("no signing key is active".into()))?;
        let row = rows
            .iter()
            .find(|row| row.kid == signer.kid)
            .ok_or_else(|| IssueError::Internal("the signing key vanished".into()))?;
        let pkcs8 = self
            .sealing
            .open(&row.sealed_private, &row.kid)
            .map_err(|error| IssueError::Internal(format!("signing key {}: {error}", row.kid)))?;
        Ok((row, pkcs8))
    }

    /// Authenticates the client (key id and key), narrows the scopes and signs the token.
    pub fn issue(
        &self,
        store: &Store,
        request: &TokenRequest,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, IssueError> {
        let refused = |code: ErrorCode, description: &str| {
            let mut error = OAuthError::new(code, description);
            error.used_basic = request.used_basic;
            IssueError::Refused(error)
        };
        let failed = || {
            refused(
                ErrorCode::InvalidClient,
                "client authentication failed: unknown client_id or wrong client_secret",
            )
        };
        let client = &request.client;
        let key = store
            .read(|tx| keys::find(tx, &client.client_id))?
            .ok_or_else(failed)?;
        // The comparison takes the same time wherever the hashes differ.
        let presented = hash_key(&client.client_secret);
        if key.deleted || !bool::from(presented.as_bytes().ct_eq(key.hash.as_bytes())) {
            return Err(failed());
        }
        if !key.active {
            return Err(refused(ErrorCode::InvalidClient, "the key is deactivated"));
        }
        if key.expires_at.is_some_and(|expires_at| expires_at <= now) {
            return Err(refused(ErrorCode::InvalidClient, "the key has expired"));
        }
        if key.leak.is_some() {
            return Err(refused(
                ErrorCode::InvalidClient,
                "the key was reported leaked; rotate it",
            ));
        }
        let scopes =
            granted_scopes(&key.scopes, request.scope.as_deref()).map_err(|mut error| {
                error.used_basic = request.used_basic;
                IssueError::Refused(error)
            })?;
        let rows = self.signing_keys(store, now)?;
        let (row, pkcs8) = self.open_signer(&rows, now)?;
        // Never past the key's own expiry: a token is never worth more than its key.
        let lifetime = self.settings.schedule.token_lifetime.num_seconds();
        let exp = match key.expires_at {
            Some(expires_at) => (now.timestamp() + lifetime).min(expires_at.timestamp()),
            None => now.timestamp() + lifetime,
        };
        let scope = scopes.map(|scopes| scope_claim(&scopes));
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: key.id.clone(),
            aud: self.settings.audience.clone(),
            client_id: key.id.clone(),
            scope: scope.clone(),
            jti: signing::random_id().map_err(IssueError::Internal)?,
            iat: now.timestamp(),
            exp,
            keygate_key_hash: key.hash.clone(),
            keygate_scope: scope.clone().unwrap_or_else(|| ALL_KEY_SCOPES.to_string()),
        };
        let access_token =
            signing::sign(&claims, &row.kid, &pkcs8).map_err(IssueError::Internal)?;
        Ok(IssuedToken {
            access_token,
            expires_in: exp - now.timestamp(),
            scope,
        })
    }
}
