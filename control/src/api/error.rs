//! The one error shape every endpoint answers with: `{"error":{"code":"…","message":"…"}}`.

use crate::store::sql::Error as StoreError;
use crate::wire::validate::FieldError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    Validation(String),
    InvalidJson(String),
    Unauthorized,
    /// A signed request whose signature is missing or does not verify (the reason says which).
    BadSignature(&'static str),
    /// The token is valid but its role does not allow this.
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed,
    Conflict(String),
    PayloadTooLarge {
        max_bytes: usize,
    },
    /// A body whose `Content-Type` the route does not read; `expected` names those it does.
    UnsupportedMediaType {
        expected: &'static str,
    },
    RequestTimeout,
    /// Too many attempts: try again after `retry_after` seconds.
    TooManyRequests {
        retry_after: u64,
        message: String,
    },
    /// The database is down or did not answer within its deadline; retrying later works.
    Unavailable(String),
    /// Logged in full; the client only learns that something failed on our side.
    Internal(String),
}

impl ApiError {
    fn status_code_and_message(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Validation(message) => {
                (StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message.clone())
            }
            ApiError::InvalidJson(message) => {
                (StatusCode::BAD_REQUEST, "INVALID_JSON", message.clone())
            }
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "missing or invalid bearer token".into(),
            ),
            ApiError::BadSignature(reason) => (
                StatusCode::UNAUTHORIZED,
                "INVALID_SIGNATURE",
                (*reason).to_string(),
            ),
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, "FORBIDDEN", message.clone()),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, "NOT_FOUND", message.clone()),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed on this path".into(),
            ),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, "CONFLICT", message.clone()),
            ApiError::PayloadTooLarge { max_bytes } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("request body is larger than {}", size(*max_bytes)),
            ),
            ApiError::UnsupportedMediaType { expected } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                format!("Content-Type must be {expected}"),
            ),
            ApiError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                "the request body did not arrive in time".into(),
            ),
            ApiError::TooManyRequests { message, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                message.clone(),
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the key database is unavailable; nothing was changed, retry shortly".into(),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "internal error; see the service log".into(),
            ),
        }
    }
}

/// `64 KiB`, `4 MiB`.
fn size(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => eprintln!("keygate-control: internal error: {detail}"),
            ApiError::Unavailable(detail) => eprintln!("keygate-control: {detail}"),
            _ => {}
        }
        let (status, code, message) = self.status_code_and_message();
        if let ApiError::TooManyRequests { retry_after, .. } = &self {
            let body = Json(json!({ "error": { "code": code, "message": message } }));
            return (
                status,
                [(header::RETRY_AFTER, retry_after.to_string())],
                body,
            )
                .into_response();
        }
        let body = Json(json!({ "error": { "code": code, "message": message } }));
        if status == StatusCode::UNAUTHORIZED {
            return (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return (status, [(header::RETRY_AFTER, "1")], body).into_response();
        }
        (status, body).into_response()
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::Validation(error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            ApiError::Unavailable(error.to_string())
        } else {
            ApiError::Internal(format!("database: {error}"))
        }
    }
}

impl From<getrandom::Error> for ApiError {
    fn from(error: getrandom::Error) -> Self {
        ApiError::Internal(format!("OS random number generator: {error}"))
    }
}

pub async fn route_not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

impl From<crate::feed::error::FeedError> for ApiError {
    fn from(error: crate::feed::error::FeedError) -> Self {
        match error {
            crate::feed::error::FeedError::Store(error) => ApiError::from(error),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
