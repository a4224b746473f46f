//! Bearer tokens: management tokens (and the bootstrap admin token) guard the admin API
//! (see `access.rs`), the sync token guards the snapshot feed, and neither opens the other's
//! door.

use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::domain::secrets::TokenDigest;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn require(expected: &TokenDigest, headers: &HeaderMap) -> Result<(), ApiError> {
    match bearer_token(headers) {
        Some(token) if expected.matches(token) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// Proof that the request carried the sync token.
pub struct SyncAuth;

impl FromRequestParts<AppState> for SyncAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require(&state.sync_token, &parts.headers).map(|()| SyncAuth)
    }
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
