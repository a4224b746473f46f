//! The decision: given the config, the credential found, the key record (if any) and the
//! request facts, allow with identity or deny with a documented status, code and body.
//!
//! Its table of decision tests is `decision/tests.rs`.

use std::net::IpAddr;

use keygate_contract::access_token;
use keygate_contract::key_format::KeyEnvironment;
use serde::Serialize;

use crate::config::Config;
use crate::policy::extract::{Credential, Malformed};
use crate::policy::routes::Access;
use crate::policy::token::looks_like_jwt;
use crate::store::key::KeyFacts;

/// Every error code the filter can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyCode {
    Unauthorized,
    InvalidApiKey,
    ApiKeyInactive,
    ApiKeyExpired,
    IpNotWhitelisted,
    OperationNotAllowed,
    AuthUnavailable,
    RateLimitExceeded,
    ConcurrencyLimitExceeded,
    QuotaExceeded,
}

impl DenyCode {
    pub const ALL: [DenyCode; 10] = [
        DenyCode::Unauthorized,
        DenyCode::InvalidApiKey,
        DenyCode::ApiKeyInactive,
        DenyCode::ApiKeyExpired,
        DenyCode::IpNotWhitelisted,
        DenyCode::OperationNotAllowed,
        DenyCode::AuthUnavailable,
        DenyCode::RateLimitExceeded,
        DenyCode::ConcurrencyLimitExceeded,
        DenyCode::QuotaExceeded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DenyCode::Unauthorized => "UNAUTHORIZED",
            DenyCode::InvalidApiKey => "INVALID_API_KEY",
            DenyCode::ApiKeyInactive => "API_KEY_INACTIVE",
            DenyCode::ApiKeyExpired => "API_KEY_EXPIRED",
            DenyCode::IpNotWhitelisted => "IP_NOT_WHITELISTED",
            DenyCode::OperationNotAllowed => "OPERATION_NOT_ALLOWED",
            DenyCode::AuthUnavailable => "AUTH_UNAVAILABLE",
            DenyCode::RateLimitExceeded => keygate_contract::usage::RATE_LIMIT_EXCEEDED,
            DenyCode::ConcurrencyLimitExceeded => {
                keygate_contract::usage::CONCURRENCY_LIMIT_EXCEEDED
            }
            DenyCode::QuotaExceeded => "QUOTA_EXCEEDED",
        }
    }

    pub fn status(self) -> u32 {
        match self {
            DenyCode::Unauthorized
            | DenyCode::InvalidApiKey
            | DenyCode::ApiKeyInactive
            | DenyCode::ApiKeyExpired => 401,
            DenyCode::IpNotWhitelisted | DenyCode::OperationNotAllowed => 403,
            DenyCode::AuthUnavailable => 503,
            DenyCode::RateLimitExceeded
            | DenyCode::ConcurrencyLimitExceeded
            | DenyCode::QuotaExceeded => 429,
        }
    }

    /// Position in `ALL`, for per-code metric arrays.
    pub fn index(self) -> usize {
        DenyCode::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// A refusal, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub code: DenyCode,
    pub message: String,
    /// RFC 6750 `error=` attribute of `WWW-Authenticate`; `None` when the request carried no
    /// credentials at all (RFC 6750 §3.1: no error code then).
    pub bearer_error: Option<&'static str>,
    /// The scope that was missing (for 403 `insufficient_scope`).
    pub required_scope: Option<String>,
    /// Whole seconds until a retry can succeed (429s): `Retry-After` and `retry_after`.
    pub retry_after: Option<u64>,
    /// Rate-limit headers to send with the reply.
    pub extra_headers: Vec<(&'static str, String)>,
}

impl Denial {
    fn new(
        code: DenyCode,
        message: impl Into<String>,
        bearer_error: Option<&'static str>,
    ) -> Denial {
        Denial {
            code,
            message: message.into(),
            bearer_error,
            required_scope: None,
            retry_after: None,
            extra_headers: Vec::new(),
        }
    }

    /// 429 for a full rate-limit window, `retry_after` seconds from now.
    pub fn rate_limited(retry_after: u64, headers: Vec<(&'static str, String)>) -> Denial {
        Denial {
            retry_after: Some(retry_after.max(1)),
            extra_headers: headers,
            ..Denial::new(
                DenyCode::RateLimitExceeded,
                "Rate limit exceeded for this API key; retry after the time given",
                None,
            )
        }
    }

    /// 429 for too many requests in flight at once.
    pub fn too_many_in_flight(headers: Vec<(&'static str, String)>) -> Denial {
        Denial {
            retry_after: Some(1),
            extra_headers: headers,
            ..Denial::new(
                DenyCode::ConcurrencyLimitExceeded,
                "Too many concurrent requests for this API key",
                None,
            )
        }
    }

    /// 429 when the fleet-wide usage quota is used up until `until` (Unix seconds).
    pub fn over_quota(until: i64, now: i64) -> Denial {
        Denial {
            retry_after: Some(until.saturating_sub(now).max(1) as u64),
            ..Denial::new(
                DenyCode::QuotaExceeded,
                "The usage quota of this API key is used up until the period resets",
                None,
            )
        }
    }

    pub fn unavailable() -> Denial {
        Denial::new(
            DenyCode::AuthUnavailable,
            "Authentication is temporarily unavailable; try again shortly",
            None,
        )
    }
}

/// Facts about the request the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub client_ip: Option<IpAddr>,
    /// Proxy clock, Unix seconds.
    pub now: i64,
    /// The route the path as sent matches (`RouteTable::route`), found once for both the scope
    /// check and usage.
    pub route: Option<usize>,
}

const INVALID_KEY_MESSAGE: &str = "The API key does not exist or is malformed";
const INVALID_TOKEN_MESSAGE: &str =
    "The access token is invalid, has expired or was not issued for this API";

/// Checks the request in the documented order: credential, lookup, environment, active,
/// expiry, IP allowlist, scope. `record` is what the store holds for the presented key, if anything.
pub fn decide<'k, K: KeyFacts>(
    config: &Config,
    credential: &Credential<'_>,
    record: Option<&'k K>,
    facts: &RequestFacts<'_>,
) -> Result<&'k K, Denial> {
    let key = match credential {
        Credential::Missing => {
            return Err(Denial::new(
                DenyCode::Unauthorized,
                "No API key provided in the request",
                None,
            ))
        }
        Credential::Malformed(reason) => {
            let message = match reason {
                Malformed::Conflicting => "The request carries more than one different API key",
                Malformed::WrongScheme => "The Authorization header must use the Bearer scheme",
                _ => INVALID_KEY_MESSAGE,
            };
            return Err(Denial::new(
                DenyCode::InvalidApiKey,
                message,
                Some("invalid_request"),
            ));
        }
        Credential::Present { key, .. } if looks_like_jwt(key) => {
            return Err(Denial::new(
                DenyCode::InvalidApiKey,
                INVALID_TOKEN_MESSAGE,
                Some("invalid_token"),
            ))
        }
        Credential::UnusableToken => {
            return Err(Denial::new(
                DenyCode::InvalidApiKey,
                INVALID_TOKEN_MESSAGE,
                Some("invalid_token"),
            ))
        }
        Credential::Present { key, .. } => Some(*key),
        Credential::Token(_) => None,
    };
    let token = match credential {
        Credential::Token(token) => Some(*token),
        _ => None,
    };
    let record = record
        // A token names its key twice (hash and id); both must agree.
        .filter(|record| token.is_none_or(|token| record.id() == token.subject))
        .ok_or_else(|| {
            let message = match token {
                Some(_) => "The API key this access token was issued from no longer exists",
                None => INVALID_KEY_MESSAGE,
            };
            Denial::new(DenyCode::InvalidApiKey, message, Some("invalid_token"))
        })?;
    // A token carries no key text: its key's environment stands for the key's prefix.
    let presented_prefix = match key {
        Some(key) => key,
        None => KeyEnvironment::parse(record.environment()).map_or("", KeyEnvironment::prefix),
    };
    if !config.allowed_prefixes.is_empty()
        && !config
            .allowed_prefixes
            .iter()
            .any(|p| presented_prefix.starts_with(p.as_str()))
    {
        let message = format!(
            "The API key belongs to another environment; this endpoint accepts {} keys",
            config.allowed_prefixes.join(" or ")
        );
        return Err(Denial::new(
            DenyCode::InvalidApiKey,
            message,
            Some("invalid_token"),
        ));
    }
    if !record.active() {
        return Err(Denial::new(
            DenyCode::ApiKeyInactive,
            "The API key has been deactivated",
            Some("invalid_token"),
        ));
    }
    if record
        .expires_at()
        .is_some_and(|expires_at| expires_at <= facts.now)
    {
        return Err(Denial::new(
            DenyCode::ApiKeyExpired,
            "The API key has passed its expiration date",
            Some("invalid_token"),
        ));
    }
    if !record.allows_ip(facts.client_ip) {
        return Err(Denial::new(
            DenyCode::IpNotWhitelisted,
            "Requests from this IP address are not allowed for this API key",
            None,
        ));
    }
    match config
        .routes
        .access_from(facts.route, facts.method, facts.path)
    {
        Access::NoRule => {
            return Err(Denial::new(
                DenyCode::OperationNotAllowed,
                "No route rule allows this operation",
                None,
            ))
        }
        Access::Scopes(scopes) => {
            for scope in scopes.into_iter().flatten() {
                let token_scope = token.and_then(|token| token.scope.as_deref());
                if token_scope.is_some_and(|claim| !access_token::grants(claim, scope)) {
                    let mut denial = Denial::new(
                        DenyCode::OperationNotAllowed,
                        format!(
                            "The access token does not carry the {scope} scope required for this operation"
                        ),
                        Some("insufficient_scope"),
                    );
                    denial.required_scope = Some(scope.to_string());
                    return Err(denial);
                }
                if !record.has_scope(scope) {
                    let mut denial = Denial::new(
                        DenyCode::OperationNotAllowed,
                        format!(
                            "The API key does not have the {scope} scope required for this operation"
                        ),
                        Some("insufficient_scope"),
                    );
                    denial.required_scope = Some(scope.to_string());
                    return Err(denial);
                }
            }
        }
    }
    Ok(record)
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    status: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

/// A local reply: status, headers and JSON body; for a gRPC request, the gRPC status Envoy
/// answers with (a trailers-only response whose `grpc-message` is the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub grpc_status: Option<i32>,
}

/// Whether a request's `content-type` makes it a gRPC call: exactly `application/grpc` or
/// `application/grpc+…`, Envoy's own rule (`Grpc::Common::hasGrpcContentType`, case-sensitive).
/// It must be the same rule: Envoy turns a local reply into a gRPC answer by it, and a reply
/// rendered for the other kind would reach the client as neither.
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    content_type.is_some_and(|value| {
        value.starts_with(GRPC) && matches!(value.get(GRPC.len()), None | Some(b'+'))
    })
}

/// The gRPC status a client acts on for each of Keygate's HTTP statuses (numbers from gRPC's
/// status codes). Envoy's own mapping would make a 429 `UNAVAILABLE`, which gRPC clients and
/// retry policies retry at once: a refused client would hammer harder.
pub fn grpc_status(http_status: u32) -> i32 {
    match http_status {
        401 => 16, // UNAUTHENTICATED
        403 => 7,  // PERMISSION_DENIED
        429 => 8,  // RESOURCE_EXHAUSTED
        503 => 14, // UNAVAILABLE
        _ => 2,    // UNKNOWN
    }
}

/// The documented denial as a gRPC answer: the same status and headers (`retry-after`,
/// `www-authenticate`, the rate-limit headers), the gRPC status, `grpc-retry-pushback-ms` when
/// the client should wait (gRPC retry policies honour it), and a `grpc-message` a person can
/// read: `RATE_LIMIT_EXCEEDED: … (retry after 12 s)`.
pub fn render_grpc(denial: &Denial, realm: &str, request_id: Option<&str>) -> LocalReply {
    let status = denial.code.status();
    let mut headers = reply_headers(denial, status, realm);
    let mut message = format!("{}: {}", denial.code.as_str(), denial.message);
    if let Some(seconds) = denial.retry_after {
        message.push_str(&format!(" (retry after {seconds} s)"));
        headers.push((
            "grpc-retry-pushback-ms",
            seconds.saturating_mul(1000).to_string(),
        ));
    }
    if let Some(request_id) = request_id {
        message.push_str(&format!(" [request {request_id}]"));
    }
    LocalReply {
        status,
        headers,
        body: message,
        grpc_status: Some(grpc_status(status)),
    }
}

/// What every denial carries besides its body: the challenge, `retry-after` and the denial's
/// own headers.
fn reply_headers(denial: &Denial, status: u32, realm: &str) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(4 + denial.extra_headers.len());
    let challenge = match (status, denial.bearer_error, &denial.required_scope) {
        (401, None, _) => Some(format!("Bearer realm=\"{realm}\"")),
        (401, Some(error), _) => Some(format!(
            "Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"",
            denial.message.replace('"', "'")
        )),
        (403, Some(error), Some(scope)) => Some(format!(
            "Bearer realm=\"{realm}\", error=\"{error}\", scope=\"{scope}\""
        )),
        _ => None,
    };
    if let Some(challenge) = challenge {
        headers.push(("www-authenticate", challenge));
    }
    if let Some(seconds) = denial.retry_after {
        headers.push(("retry-after", seconds.to_string()));
    }
    headers.extend(denial.extra_headers.iter().cloned());
    headers
}

/// Renders the documented error response for a denial.
pub fn render(denial: &Denial, realm: &str, request_id: Option<&str>) -> LocalReply {
    let status = denial.code.status();
    let body = serde_json::to_string(&ErrorBody {
        error: ErrorDetail {
            code: denial.code.as_str(),
            message: &denial.message,
            status,
            request_id,
            retry_after: denial.retry_after,
        },
    })
    .unwrap_or_default();
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("cache-control", "no-store".to_string()),
    ];
    headers.extend(reply_headers(denial, status, realm));
    LocalReply {
        status,
        headers,
        body,
        grpc_status: None,
    }
}

#[cfg(test)]
mod tests;
