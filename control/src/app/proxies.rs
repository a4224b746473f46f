//! Proxy identity's operations: enrolling with an enrollment token, an admin issuing a
//! credential, revoking, listing, and a proxy's reported usage listed and discarded; the
//! enrollment tokens themselves. Each admin change writes its audit entry in its transaction.
//!
//! What runs per sync call (checking a credential, noting a sighting) is in `credentials` and
//! `presence`, in memory, so a call costs no database write.

use crate::app::error::LifecycleError;
use crate::app::quota;
use crate::domain::audit::{Action, Actor};
use crate::domain::clock;
use crate::domain::proxies::Reported;
use crate::domain::proxies::{
    mint_credential, mint_enrollment_secret, new_enrollment_id, new_proxy_id, EnrollmentToken,
    StoredProxy,
};
use crate::domain::secrets::TokenDigest;
use crate::domain::tokens::digest;
use crate::store::audit;
use crate::store::db::Store;
use crate::store::keys;
use crate::store::proxies;
use chrono::{DateTime, Utc};
use keygate_contract::enrollment::EnrollRequest;
use serde_json::json;

pub mod credentials;
pub mod enroll_limit;
pub mod presence;
pub mod version_times;

#[cfg(test)]
mod tests;

/// What the sync routes and the fleet list share: credentials checked, sightings gathered,
/// the feed's version clock, enrollment limits and counts (the `/metrics` numbers).
#[derive(Debug)]
pub struct ProxyRegistry {
    pub credentials: std::sync::Arc<credentials::CredentialCache>,
    pub presence: presence::PresenceLog,
    pub versions: version_times::VersionTimes,
    /// Failed enrollments per address (a wrong enrollment token).
    pub enroll_failures: crate::app::oauth::failures::FailureLimiter,
    /// Enrollment attempts per enrollment token.
    pub enroll_limit: enroll_limit::EnrollLimit,
    /// Names enrolling again and again (shared by two proxies, or restarting in a loop).
    pub name_churn: enroll_limit::NameChurn,
    pub churned: std::sync::atomic::AtomicU64,
    /// A proxy not seen for this long is `stale`.
    pub stale_after: chrono::Duration,
    pub enrolled: std::sync::atomic::AtomicU64,
    pub enroll_refused: std::sync::atomic::AtomicU64,
    /// `KEYGATE_ENROLLMENT_TOKEN`: an enrollment token from the environment (one Secret for
    /// the control service and every proxy), besides those made with the API.
    pub bootstrap_enrollment: Option<TokenDigest>,
}

impl ProxyRegistry {
    pub fn new(
        stale_after: chrono::Duration,
        enrollments_per_minute: u32,
        bootstrap_enrollment: Option<TokenDigest>,
    ) -> Self {
        ProxyRegistry {
            credentials: Default::default(),
            presence: Default::default(),
            versions: Default::default(),
            enroll_failures: Default::default(),
            enroll_limit: enroll_limit::EnrollLimit::new(enrollments_per_minute),
            name_churn: Default::default(),
            churned: Default::default(),
            stale_after,
            enrolled: Default::default(),
            enroll_refused: Default::default(),
            bootstrap_enrollment,
        }
    }
}

/// Why an enrollment was refused.
#[derive(Debug)]
pub enum EnrollError {
    /// No usable enrollment token (unknown, revoked or expired).
    BadToken,
    /// A proxy of that name was revoked: it stays revoked.
    Revoked,
    /// An admin issued that name's credential: enrolling does not replace it.
    Issued,
    Lifecycle(LifecycleError),
}

impl From<LifecycleError> for EnrollError {
    fn from(error: LifecycleError) -> Self {
        EnrollError::Lifecycle(error)
    }
}

impl From<crate::store::sql::Error> for EnrollError {
    fn from(error: crate::store::sql::Error) -> Self {
        EnrollError::Lifecycle(error.into())
    }
}

/// A proxy with its new credential (shown once).
pub struct Credentialed {
    pub proxy: StoredProxy,
    pub credential: String,
}

/// The enrollment token `KEYGATE_ENROLLMENT_TOKEN` names, besides those made with the API:
/// enrollments with it are recorded as made with this id.
pub const BOOTSTRAP_ENROLLMENT: &str = "bootstrap";

/// The id of the usable enrollment token whose secret is `secret` (`BOOTSTRAP_ENROLLMENT` for
/// the environment's); `None`: no such token, or revoked or expired.
pub fn enrollment_token_id(
    store: &Store,
    secret: &str,
    bootstrap: Option<&TokenDigest>,
    now: DateTime<Utc>,
) -> Result<Option<String>, LifecycleError> {
    let hash = digest(secret);
    let stored = store.read(|tx| proxies::find_token_by_hash(tx, &hash))?;
    Ok(match stored {
        Some(token) if token.is_usable(now) => Some(token.id),
        _ if bootstrap.is_some_and(|bootstrap| bootstrap.matches(secret)) => {
            Some(BOOTSTRAP_ENROLLMENT.to_string())
        }
        _ => None,
    })
}

/// Enrolls the proxy `request` names with the enrollment token `token_id` (from
/// [`enrollment_token_id`], checked again here): a new identity, or a new credential for the
/// enrolled identity of that name (its old credential stops working). A name an admin issued a
/// credential for is not taken over by enrolling (`Issued`), nor is a revoked one.
pub fn enroll(
    store: &Store,
    token_id: &str,
    request: &EnrollRequest,
    now: DateTime<Utc>,
) -> Result<Credentialed, EnrollError> {
    let minted = mint_credential().map_err(LifecycleError::from)?;
    let fresh_id = new_proxy_id().map_err(LifecycleError::from)?;
    store.write(|tx| {
        if token_id != BOOTSTRAP_ENROLLMENT {
            let still_usable =
                proxies::find_token_by_id(tx, token_id)?.is_some_and(|token| token.is_usable(now));
            if !still_usable {
                return Err(EnrollError::BadToken);
            }
        }
        let token_id = token_id.to_string();
        let proxy = match proxies::find_by_name(tx, &request.name)? {
            Some(known) if known.revoked_at.is_some() => return Err(EnrollError::Revoked),
            Some(known) if known.enrolled_with.is_none() => return Err(EnrollError::Issued),
            Some(known) => {
                let proxy = StoredProxy {
                    labels: request.labels.clone(),
                    version: request.version.clone(),
                    credential_hash: minted.hash.clone(),
                    credential_last4: minted.last4.clone(),
                    enrolled_with: Some(token_id.clone()),
                    enrolled_at: now,
                    ..known
                };
                proxies::replace_credential(tx, &proxy)?;
                proxy
            }
            None => {
                let proxy = new_proxy(fresh_id.clone(), request, &minted, now);
                let proxy = StoredProxy {
                    enrolled_with: Some(token_id.clone()),
                    ..proxy
                };
                proxies::insert(tx, &proxy)?;
                proxy
            }
        };
        proxies::count_enrollment(tx, &token_id)?;
        Ok(Credentialed {
            proxy,
            credential: minted.secret.clone(),
        })
    })
}

fn new_proxy(
    id: String,
    request: &EnrollRequest,
    minted: &crate::domain::proxies::Minted,
    now: DateTime<Utc>,
) -> StoredProxy {
    StoredProxy {
        id,
        name: request.name.clone(),
        labels: request.labels.clone(),
        version: request.version.clone(),
        credential_hash: minted.hash.clone(),
        credential_last4: minted.last4.clone(),
        enrolled_with: None,
        created_at: now,
        enrolled_at: now,
        revoked_at: None,
        presence: Default::default(),
    }
}

/// An admin issues a credential for a proxy (or a deployment) named `request.name`, which must
/// be new.
pub fn issue(
    store: &Store,
    actor: &Actor,
    request: &EnrollRequest,
    now: DateTime<Utc>,
) -> Result<Option<Credentialed>, LifecycleError> {
    let minted = mint_credential()?;
    let id = new_proxy_id()?;
    store.write(|tx| {
        if proxies::find_by_name(tx, &request.name)?.is_some() {
            return Ok(None);
        }
        let proxy = new_proxy(id.clone(), request, &minted, now);
        proxies::insert(tx, &proxy)?;
        audit::record(
            tx,
            actor,
            Action::ProxyCreate,
            &proxy.id,
            None,
            &json!({ "name": proxy.name, "labels": proxy.labels }),
            now,
        )?;
        Ok(Some(Credentialed {
            proxy,
            credential: minted.secret.clone(),
        }))
    })
}

/// Every proxy, oldest first.
pub fn list(store: &Store) -> Result<Vec<StoredProxy>, LifecycleError> {
    Ok(store.read(proxies::list)?)
}

pub fn find(store: &Store, id: &str) -> Result<StoredProxy, LifecycleError> {
    store
        .read(|tx| proxies::find_by_id(tx, id))?
        .ok_or(LifecycleError::NotFound)
}

/// Revokes the proxy: its credential is refused from now on, and it cannot enroll again.
pub fn revoke(
    store: &Store,
    actor: &Actor,
    id: &str,
    now: DateTime<Utc>,
) -> Result<StoredProxy, LifecycleError> {
    store.write(|tx| {
        let proxy = proxies::find_by_id(tx, id)?.ok_or(LifecycleError::NotFound)?;
        if proxies::set_revoked_at(tx, id, now)? > 0 {
            audit::record(tx, actor, Action::ProxyRevoke, id, None, &json!({}), now)?;
        }
        Ok(proxy)
    })
}

/// What the proxy reported that is still held hourly.
pub fn reported(store: &Store, id: &str) -> Result<Vec<Reported>, LifecycleError> {
    store.read(|tx| {
        proxies::find_by_id(tx, id)?.ok_or(LifecycleError::NotFound)?;
        Ok(proxies::reported(tx, id)?)
    })
}

/// Takes what the proxy reported back out of the usage counts; the rows taken out.
pub fn discard_reported(
    store: &Store,
    actor: &Actor,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Reported>, LifecycleError> {
    store.write(|tx| {
        proxies::find_by_id(tx, id)?.ok_or(LifecycleError::NotFound)?;
        let rows = proxies::discard_reported(tx, id)?;
        // A quota mark its reports set is lifted now, not at the key's next report.
        let mut key_ids: Vec<&str> = rows.iter().map(|row| row.key_id.as_str()).collect();
        key_ids.sort_unstable();
        key_ids.dedup();
        let touched = keys::find_live(tx, &key_ids)?;
        quota::remark(tx, &touched, now)?;
        let requests: i64 = rows.iter().map(|row| row.count).sum();
        audit::record(
            tx,
            actor,
            Action::ProxyReportsDiscard,
            id,
            None,
            &json!({ "rows": rows.len(), "requests": requests }),
            now,
        )?;
        Ok(rows)
    })
}

/// A new enrollment token and its secret (shown once).
pub fn create_enrollment_token(
    store: &Store,
    actor: &Actor,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(EnrollmentToken, String), LifecycleError> {
    let minted = mint_enrollment_secret()?;
    let token = EnrollmentToken {
        id: new_enrollment_id()?,
        hash: minted.hash,
        last4: minted.last4,
        name: name.to_string(),
        created_at: now,
        expires_at,
        revoked_at: None,
        enrolled: 0,
    };
    store.write(|tx| {
        proxies::insert_token(tx, &token)?;
        audit::record(
            tx,
            actor,
            Action::EnrollmentTokenCreate,
            &token.id,
            None,
            &json!({ "name": token.name, "expires_at": token.expires_at.map(clock::format) }),
            now,
        )?;
        Ok::<_, LifecycleError>(())
    })?;
    Ok((token, minted.secret))
}

pub fn list_enrollment_tokens(store: &Store) -> Result<Vec<EnrollmentToken>, LifecycleError> {
    Ok(store.read(proxies::list_tokens)?)
}

/// Revokes the enrollment token: no proxy enrolls with it from now on (enrolled proxies keep
/// their credentials).
pub fn revoke_enrollment_token(
    store: &Store,
    actor: &Actor,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), LifecycleError> {
    store.write(|tx| {
        if proxies::revoke_token(tx, id, now)? == 0 {
            return Err(LifecycleError::NotFound);
        }
        audit::record(
            tx,
            actor,
            Action::EnrollmentTokenRevoke,
            id,
            None,
            &json!({}),
            now,
        )?;
        Ok(())
    })
}
