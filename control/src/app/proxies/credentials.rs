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
/// Entries held at most; expired ones are dropped first when full.
const MAX_ENTRIES: usize = 100_000;

/// Who a credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyIdentity {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
struct Checked {
    /// `None`: no usable proxy has this credential (unknown or revoked).
    identity: Option<ProxyIdentity>,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct CredentialCache {
    by_digest: Mutex<HashMap<String, Checked>>,
}

impl CredentialCache {
    /// What `secret` resolved to within the TTL: `Some(None)` for a refused one, `None` when
    /// it must be read.
    pub fn cached(&self, secret: &str, now: Instant) -> Option<Option<ProxyIdentity>> {
        let entries = self
            .by_digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let checked = entries.get(&digest(secret))?;
        (now.duration_since(checked.at) < CREDENTIAL_TTL).then(|| checked.identity.clone())
    }

    /// Reads the credential's proxy and keeps the answer.
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
        let mut entries = self
            .by_digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, checked| now.duration_since(checked.at) < CREDENTIAL_TTL);
        }
        if entries.len() < MAX_ENTRIES {
            entries.insert(
                hash,
                Checked {
                    identity: identity.clone(),
                    at: now,
                },
            );
        }
        Ok(identity)
    }

    /// Forgets every credential of proxy `id` (revoked here, or enrolled again).
    pub fn forget(&self, id: &str) {
        let mut entries = self
            .by_digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, checked| checked.identity.as_ref().is_none_or(|known| known.id != id));
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
        let start = Instant::now();
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
}
