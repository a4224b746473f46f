//! Extractors that turn bad input into our JSON errors instead of axum's plain-text rejections.

use crate::api::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// What a JSON body's `Content-Type` must be, as a 415 says.
pub const JSON_TYPE: &str = "application/json";
/// Larger request bodies are refused with 413 (the proxies' posts allow more).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// What a proxy may post (`POST /v1/usage`, `POST /v1/ratelimits/sync`): a usage report of
/// thousands of keys, or a fleet sync of up to 5,000 keys of up to 3 × 64 buckets.
pub const MAX_PROXY_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A JSON request body; bodies over the limit give 413, a `Content-Type` other than JSON 415,
/// unparsable ones `INVALID_JSON`, and well-formed JSON of the wrong shape `VALIDATION_ERROR`
/// naming the field. `MAX_BYTES` only
/// names the limit in the 413; the route's `DefaultBodyLimit` enforces it.
pub struct JsonBody<T, const MAX_BYTES: usize = MAX_BODY_BYTES>(pub T);

/// A JSON body as the raw bytes it arrived in (for a signature over them), up to `MAX_BYTES`;
/// the same 413 and 415 as [`JsonBody`].
pub struct RawJsonBody<const MAX_BYTES: usize>(pub Bytes);

impl<S: Send + Sync, const MAX_BYTES: usize> FromRequest<S> for RawJsonBody<MAX_BYTES> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let declares_json = declares_json(request.headers());
        let bytes = read_body(request, state, MAX_BYTES).await?;
        if !declares_json {
            return Err(ApiError::UnsupportedMediaType {
                expected: JSON_TYPE,
            });
        }
        Ok(RawJsonBody(bytes))
    }
}

/// Like [`JsonBody`], but an empty body means `T::default()` (whatever its `Content-Type`:
/// `curl -X POST -d ''` sends a form type).
pub struct OptionalJsonBody<T>(pub T);

/// Query parameters; a value of the wrong type gives `VALIDATION_ERROR`.
pub struct QueryParams<T>(pub T);

/// The `{id}` path segment.
pub struct KeyIdParam(pub String);

impl<S: Send + Sync, T: DeserializeOwned, const MAX_BYTES: usize> FromRequest<S>
    for JsonBody<T, MAX_BYTES>
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let RawJsonBody(bytes) = RawJsonBody::<MAX_BYTES>::from_request(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let declares_json = declares_json(request.headers());
        let bytes = read_body(request, state, MAX_BODY_BYTES).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        if !declares_json {
            return Err(ApiError::UnsupportedMediaType {
                expected: JSON_TYPE,
            });
        }
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(params)| QueryParams(params))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                ApiError::Validation(format!("query: {detail}"))
            })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for KeyIdParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .ok()
            // Nothing stored has a control character in its id or name (the contract refuses
            // them), and PostgreSQL text cannot even hold NUL: such an id names nothing.
            .filter(|Path(id)| !id.chars().any(char::is_control))
            .map(|Path(id)| KeyIdParam(id))
            .ok_or_else(|| ApiError::NotFound("no such key".into()))
    }
}

/// No `Content-Type` (clients that omit it mean JSON here), `application/json` or
/// `application/<anything>+json`, with any parameters.
pub fn declares_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return true;
    };
    let Some(essence) = essence(value) else {
        return false;
    };
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// Whether `Content-Type` is `media_type` (in any case, with any parameters).
pub fn declares(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(essence)
        .is_some_and(|essence| essence == media_type)
}

/// A media type without its parameters, lowercase.
fn essence(value: &HeaderValue) -> Option<String> {
    let value = value.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// How long a client may take to send its body; a stalled upload would otherwise hold its
/// connection and task for as long as the client likes. The server sets it on each request
/// (`serve --body-timeout`); without it, [`DEFAULT_BODY_READ_TIMEOUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyReadTimeout(pub Duration);

const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn read_body<S: Send + Sync>(
    request: Request,
    state: &S,
    max_bytes: usize,
) -> Result<Bytes, ApiError> {
    // A declared length over the limit is refused at once, without waiting for the body.
    let declared_length = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > max_bytes as u64) {
        return Err(ApiError::PayloadTooLarge { max_bytes });
    }
    let timeout = request
        .extensions()
        .get::<BodyReadTimeout>()
        .map_or(DEFAULT_BODY_READ_TIMEOUT, |BodyReadTimeout(timeout)| {
            *timeout
        });
    tokio::time::timeout(timeout, Bytes::from_request(request, state))
        .await
        .map_err(|_| ApiError::RequestTimeout)?
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { max_bytes },
            _ => ApiError::InvalidJson(rejection.body_text()),
        })
}

/// Parses `bytes` as `T`, keeping the path to whatever field was wrong.
/// Bodies must be JSON objects: serde would otherwise also accept a struct as an array of its
/// fields in order.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    let starts_non_object = matches!(
        first,
        Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
    );
    if starts_non_object && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Err(ApiError::Validation("body: must be a JSON object".into()));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                ApiError::Validation(describe_data_error(&path, &inner))
            }
            _ => ApiError::InvalidJson(format!("request body is not valid JSON: {inner}")),
        }
    })?;
    deserializer.end().map_err(|error| {
        ApiError::InvalidJson(format!("request body is not valid JSON: {error}"))
    })?;
    Ok(value)
}

/// `limits.per_minute: invalid type: string "x", expected u64`, or `name: is required`.
fn describe_data_error(path: &str, error: &serde_json::Error) -> String {
    let full = error.to_string();
    let message = match full.rfind(" at line ") {
        Some(position) => &full[..position],
        None => full.as_str(),
    };
    let parent = if path == "." { "" } else { path };
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return match parent {
            "" => format!("{field}: is required"),
            _ => format!("{parent}.{field}: is required"),
        };
    }
    match parent {
        "" => format!("body: {message}"),
        _ => format!("{parent}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::validate::CreateKeyRequest;

    fn message_of(json: &str) -> (String, String) {
        match parse_json::<CreateKeyRequest>(json.as_bytes()) {
            Err(ApiError::Validation(message)) => ("VALIDATION_ERROR".into(), message),
            Err(ApiError::InvalidJson(message)) => ("INVALID_JSON".into(), message),
            other => panic!("unexpected {other:?}", other = other.map(|_| ())),
        }
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        let cases = [
            (r#"{}"#, "name: is required"),
            (
                r#"{"name":1}"#,
                "name: invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"name":"a","limits":{"per_minute":"x"}}"#,
                "limits.per_minute: invalid type",
            ),
            (
                r#"{"name":"a","plan":7}"#,
                "plan: invalid type: integer `7`, expected a string",
            ),
            (r#"{"name":"a","scopes":"all"}"#, "scopes: invalid type"),
            (r#"["a"]"#, "body: must be a JSON object"),
            (r#"null"#, "body: must be a JSON object"),
        ];
        for (json, expected) in cases {
            let (code, message) = message_of(json);
            assert_eq!(code, "VALIDATION_ERROR", "{json}");
            assert!(message.starts_with(expected), "{json} gave {message}");
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        let (code, message) = message_of(r#"{"name":"a","colour":"red"}"#);
        assert_eq!(code, "VALIDATION_ERROR");
        assert!(message.contains("unknown field `colour`"), "{message}");
    }

    #[test]
    fn json_content_types() {
        let declared = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            declares_json(&headers)
        };
        assert!(declares_json(&HeaderMap::new()));
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(declared(json), "{json}");
        }
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "",
        ] {
            assert!(!declared(other), "{other}");
        }
    }

    #[test]
    fn deep_nesting_and_odd_bytes_are_invalid_json() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let nested_field = format!(r#"{{"name":{deep}}}"#);
        let invalid_utf8 = b"{\"name\":\"\xff\xfe\"}".to_vec();
        let raw_nul = b"{\"name\":\"a\x00b\"}".to_vec();
        for bytes in [
            deep.into_bytes(),
            nested_field.into_bytes(),
            invalid_utf8,
            raw_nul,
            br#"{"name":"\ud800"}"#.to_vec(),
            br#"{"name":"a","limits":{"per_minute":1e400}}"#.to_vec(),
        ] {
            assert!(
                matches!(
                    parse_json::<CreateKeyRequest>(&bytes),
                    Err(ApiError::InvalidJson(_) | ApiError::Validation(_))
                ),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn broken_json_is_invalid_json() {
        for json in ["{", "", "{\"name\":\"a\"} trailing", "nope"] {
            assert_eq!(message_of(json).0, "INVALID_JSON", "{json}");
        }
    }
}
