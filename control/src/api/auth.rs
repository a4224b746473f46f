//! Bearer tokens: management tokens (and the bootstrap admin token) guard the admin API
//! (see `access.rs`), the shared sync token or a proxy's own credential guards the snapshot
//! feed and the proxies' posts, and neither opens the other's door.

use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::app::proxies::credentials::ProxyIdentity;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use keygate_contract::enrollment;
use std::sync::Arc;
use std::time::Instant;

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Who made a sync call (snapshot reads, usage reports, fleet syncs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncCaller {
    /// The shared `KEYGATE_SYNC_TOKEN` (while `--no-shared-sync-token` is not given): the
    /// proxy is whoever it says it is.
    Shared,
    /// A proxy's own credential: what it posts is recorded under this identity.
    Proxy(ProxyIdentity),
}

impl SyncCaller {
    pub fn proxy(&self) -> Option<&ProxyIdentity> {
        match self {
            SyncCaller::Shared => None,
            SyncCaller::Proxy(identity) => Some(identity),
        }
    }
}

/// Proof that the request carried the shared sync token or a usable proxy credential.
pub struct SyncAuth(pub SyncCaller);

impl FromRequestParts<AppState> for SyncAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        sync_caller(state, &parts.headers).await.map(SyncAuth)
    }
}

/// Who the request's bearer is on the sync routes; 401 for anything but the shared sync token
/// (while on) or a usable proxy credential. Also run again after a long poll's wait, so a
/// proxy revoked meanwhile gets no change it waited for.
pub async fn sync_caller(state: &AppState, headers: &HeaderMap) -> Result<SyncCaller, ApiError> {
    let presented = bearer_token(headers).ok_or(ApiError::Unauthorized)?;
    if let Some(shared) = &state.sync_token {
        if shared.matches(presented) {
            return Ok(SyncCaller::Shared);
        }
    }
    // Only what has a credential's shape costs a lookup.
    if !enrollment::is_credential(presented) {
        return Err(ApiError::Unauthorized);
    }
    let now = Instant::now();
    let identity = match state.proxies.credentials.cached(presented, now) {
        Some(known) => known,
        None => {
            let secret = presented.to_string();
            let credentials = Arc::clone(&state.proxies.credentials);
            state
                .blocking(move |store| credentials.check(store, &secret, now))
                .await?
        }
    };
    identity
        .map(SyncCaller::Proxy)
        .ok_or(ApiError::Unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn reads_bearer_tokens() {
        assert_eq!(bearer_token(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
