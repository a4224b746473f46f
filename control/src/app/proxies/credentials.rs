//! Proxy credentials checked per sync call without a database read each time: what a
//! credential's digest resolved to is kept for [`CREDENTIAL_TTL`]. A revocation on this replica
//! forgets the proxy's entries at once; another replica sees it within the TTL. Cost: at most one
//! indexed read per proxy (per credential) and TTL, whatever its call rate.

use crate::domain::proxies::StoredProxy;
use crate::domain::tokens::digest;
use crate::store::db::Store;
use crate::store::proxies;
use crate::store::sql::Error;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a checked credential is trusted without reading its row again.
pub const CREDENTIAL_TTL: Duration = Duration::from_secs(2);
/// Credentials of proxies held at most (a fleet's size); expired ones are dropped first.
const MAX_KNOWN: usize = 100_000;
/// Refused credentials remembered at most: made-up ones never push out the fleet's.
const MAX_REFUSED: usize = 10_000;

/// Who a credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyIdentity {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Default)]
struct Held {
    /// Digest → the identity and when it was read.
    known: HashMap<String, (ProxyIdentity, Instant)>,
    /// Digest → when it was found to belong to no usable proxy.
    refused: HashMap<String, Instant>,
    /// Proxy id → when it was revoked or enrolled again here: a read that began before is not
    /// trusted (it may have seen the row just before the change).
    forgotten: HashMap<String, Instant>,
}

#[derive(Debug, Default)]
pub struct CredentialCache {
    held: Mutex<Held>,
}

fn fresh(at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(at) < CREDENTIAL_TTL
}

impl CredentialCache {
    /// What `secret` resolved to within the TTL: `Some(None)` for a refused one, `None` when
    /// it must be read.
    pub fn cached(&self, secret: &str, now: Instant) -> Option<Option<ProxyIdentity>> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let hash = digest(secret);
        if let Some((identity, at)) = held.known.get(&hash) {
            let changed_since = held
                .forgotten
                .get(&identity.id)
                .is_some_and(|when| when >= at);
            return (fresh(*at, now) && !changed_since).then(|| Some(identity.clone()));
        }
        held.refused
            .get(&hash)
            .filter(|at| fresh(**at, now))
            .map(|_| None)
    }

    /// Reads the credential's proxy (the read begins at `now`) and keeps the answer.
    pub fn check(
        &self,
        store: &Store,
        secret: &str,
        now: Instant,
    ) -> Result<Option<ProxyIdentity>, Error> {
        let hash = digest(secret);
        let proxy = store.read(|tx| proxies::find_by_hash(tx, &hash))?;
        let identity = proxy
            .filter(|proxy: &StoredProxy| proxy.revoked_at.is_none())
            .map(|proxy| ProxyIdentity {
                id: proxy.id,
                name: proxy.name,
            });
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match identity {
            Some(identity) => {
                if held
                    .forgotten
                    .get(&identity.id)
                    .is_some_and(|when| *when >= now)
                {
                    // Revoked or enrolled again while this read ran: refused, to be safe.
                    return Ok(None);
                }
                if held.known.len() >= MAX_KNOWN {
                    held.known.retain(|_, (_, at)| fresh(*at, now));
                }
                if held.known.len() < MAX_KNOWN {
                    held.known.insert(hash, (identity.clone(), now));
                }
                Ok(Some(identity))
            }
            None => {
                if held.refused.len() >= MAX_REFUSED {
                    held.refused.retain(|_, at| fresh(*at, now));
                }
                if held.refused.len() < MAX_REFUSED {
                    held.refused.insert(hash, now);
                }
                Ok(None)
            }
        }
    }

    /// Forgets every credential of proxy `id` (revoked here, or enrolled again), and distrusts
    /// reads of it that began before now.
    pub fn forget(&self, id: &str) {
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.known.retain(|_, (known, _)| known.id != id);
        held.forgotten.retain(|_, when| fresh(*when, now));
        held.forgotten.insert(id.to_string(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::proxies;
    use crate::domain::audit::Actor;
    use chrono::Utc;
    use keygate_contract::enrollment::EnrollRequest;

    #[test]
    fn a_checked_credential_is_kept_until_revoked_or_stale() {
        let (store, dir) = crate::store::db::temp_store("credentials", "ttl");
        let actor = Actor::bootstrap();
        let request = EnrollRequest {
            name: "envoy-1".into(),
            ..EnrollRequest::default()
        };
        let issued = proxies::issue(&store, &actor, &request, Utc::now())
            .unwrap()
            .unwrap();
        let cache = CredentialCache::default();
        let start = Instant::now() - CREDENTIAL_TTL / 4;
        assert_eq!(cache.cached(&issued.credential, start), None);
        let identity = cache
            .check(&store, &issued.credential, start)
            .unwrap()
            .unwrap();
        assert_eq!(identity.id, issued.proxy.id);
        assert_eq!(
            cache.cached(&issued.credential, start),
            Some(Some(identity))
        );
        proxies::revoke(&store, &actor, &issued.proxy.id, Utc::now()).unwrap();
        cache.forget(&issued.proxy.id);
        assert_eq!(cache.cached(&issued.credential, start), None);
        assert_eq!(
            cache.check(&store, &issued.credential, start).unwrap(),
            None
        );
        assert_eq!(cache.cached(&issued.credential, start), Some(None));
        assert_eq!(
            cache.cached(&issued.credential, start + CREDENTIAL_TTL),
            None
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_read_that_began_before_a_revocation_is_not_trusted() {
        let (store, dir) = crate::store::db::temp_store("credentials", "race");
        let request = EnrollRequest {
            name: "envoy-2".into(),
            ..EnrollRequest::default()
        };
        let issued = proxies::issue(&store, &Actor::bootstrap(), &request, Utc::now())
            .unwrap()
            .unwrap();
        let cache = CredentialCache::default();
        let began = Instant::now();
        // The revocation lands on this replica while the read runs (the row still read usable).
        cache.forget(&issued.proxy.id);
        assert_eq!(
            cache.check(&store, &issued.credential, began).unwrap(),
            None
        );
        assert_eq!(
            cache.cached(&issued.credential, began),
            None,
            "nothing was kept"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
