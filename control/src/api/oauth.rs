//! The OAuth 2.0 endpoints (no admin token: the client authenticates with its key):
//! `POST /oauth/token`, `GET /.well-known/jwks.json`, `GET /.well-known/oauth-authorization-server`.
//! Answers follow RFC 6749 §5 and RFC 8414, not the admin API's error shape; failed client
//! authentications are limited per client id and address (`app::oauth::failures`).

use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::app::oauth::{IssueError, OAuthServer};
use crate::domain::clock;
use crate::domain::oauth::{parse_token_request, ErrorCode, OAuthError};
use crate::wire::oauth::{ServerMetadata, TokenError, TokenResponse};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ipnet::IpNet;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// RFC 6749 §5.1: token answers, good or bad, are never cached.
const NO_STORE: [(header::HeaderName, &str); 2] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::PRAGMA, "no-cache"),
];

fn server(state: &AppState) -> Result<Arc<OAuthServer>, ApiError> {
    state.oauth.clone().ok_or_else(|| {
        ApiError::NotFound(
            "OAuth 2.0 is off on this service: set KEYGATE_OAUTH_SEALING_KEY to turn it on".into(),
        )
    })
}

fn refusal(error: &OAuthError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = Json(TokenError {
        error: error.code.as_str().to_string(),
        error_description: error.description.clone(),
    });
    let mut response = (status, NO_STORE, body).into_response();
    if error.used_basic && status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"keygate\""),
        );
    }
    response
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy (Envoy), the last
/// address it appended to `X-Forwarded-For`.
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    // A service listening on `[::]` sees IPv4 peers as IPv4-mapped IPv6 addresses.
    let peer = peer.to_canonical();
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .next_back()
        .and_then(|last| last.trim().parse::<IpAddr>().ok())
        .map_or(peer, |address| address.to_canonical())
}

pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let server = server(&state)?;
    let text = |name| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    let request = match parse_token_request(
        text(header::CONTENT_TYPE),
        text(header::AUTHORIZATION),
        &body,
    ) {
        Ok(request) => request,
        Err(error) => return Ok(refusal(&error)),
    };
    let address = client_address(peer.ip(), &headers, &state.trusted_proxies);
    let client_id = request.client.client_id.clone();
    if let Some(wait) =
        state
            .oauth_failures
            .blocked_for(Some(&client_id), Some(address), Instant::now())
    {
        state
            .oauth_failures
            .throttled
            .fetch_add(1, Ordering::Relaxed);
        let seconds = wait.as_secs().max(1);
        let mut error = OAuthError::new(
            ErrorCode::InvalidClient,
            format!("too many failed client authentications; retry after {seconds} s"),
        );
        error.used_basic = request.used_basic;
        let mut response = refusal(&error);
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        response.headers_mut().remove(header::WWW_AUTHENTICATE);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Ok(response);
    }
    let issuing = Arc::clone(&server);
    let issued = state
        .blocking(move |store| Ok::<_, ApiError>(issuing.issue(store, &request, clock::now())))
        .await?;
    match issued {
        Ok(token) => {
            state.oauth_failures.issued.fetch_add(1, Ordering::Relaxed);
            println!(
                "oauth: issued a token to {client_id} ({} s)",
                token.expires_in
            );
            let body = Json(TokenResponse {
                access_token: token.access_token,
                token_type: "Bearer".into(),
                expires_in: token.expires_in,
                scope: token.scope,
            });
            Ok((StatusCode::OK, NO_STORE, body).into_response())
        }
        Err(IssueError::Refused(error)) => {
            if error.code == ErrorCode::InvalidClient {
                state
                    .oauth_failures
                    .failed(Some(&client_id), Some(address), Instant::now());
            }
            Ok(refusal(&error))
        }
        Err(IssueError::Internal(detail)) => Err(ApiError::Internal(format!("oauth: {detail}"))),
    }
}

pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let server = server(&state)?;
    let keys = state
        .blocking(move |store| {
            server
                .jwks(store, clock::now())
                .map_err(|error| match error {
                    IssueError::Internal(detail)
                    | IssueError::Refused(OAuthError {
                        description: detail,
                        ..
                    }) => ApiError::Internal(format!("oauth: {detail}")),
                })
        })
        .await?;
    // Short enough for a successor published ahead to be seen in time by a cache that honours it.
    let cache = [(header::CACHE_CONTROL, "public, max-age=60")];
    Ok((cache, Json(json!({ "keys": keys }))).into_response())
}

pub async fn metadata(State(state): State<AppState>) -> Result<Json<ServerMetadata>, ApiError> {
    let server = server(&state)?;
    Ok(Json(ServerMetadata::for_issuer(
        &server.settings.issuer,
        &state.allowed_scopes,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_address_counts_only_from_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.7"),
        );
        let envoy: IpAddr = "127.0.0.1".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        assert_eq!(
            client_address(envoy, &headers, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(envoy, &headers, &[]), envoy);
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client_address(stranger, &headers, &trusted), stranger);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let expected: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(client_address(mapped, &headers, &trusted), expected);
        assert_eq!(client_address(envoy, &HeaderMap::new(), &trusted), envoy);
    }
}
