//! The admin API's answers, read strictly enough to tell the Keygate control service from any
//! other server: each success has one status, is JSON, and deserializes into its type below;
//! errors have the service's `{"error":{"code","message"}}` shape. Anything else is refused
//! with a message naming the server, the request and what came back.
//!
//! A key is read into the served type itself (`api::views::KeyView`); the list and usage answers
//! are private to their handlers, so their wire forms are mirrored here, and a test below
//! round-trips the served types through them.

use crate::cli::client::error::ClientError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::error::Category;

/// Answers longer than this are not read to the end (Keygate's largest, a page of 1,000 keys or
/// a year of hourly usage, is a few MiB).
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// A key as the admin API shows it: the very type the service serves.
pub type Key = crate::wire::views::KeyView;
/// The limits an admin sees: the very type the service serves.
pub type EffectiveLimits = crate::domain::plans::AdminLimits;

/// A key just created or rotated, with its secret (which the answer must carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub key: Key,
    pub secret: String,
}

/// `DELETE /v1/keys/{id}` succeeded (204, no body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted;

/// A management token as the admin API shows it: the very type the service serves.
pub type Token = crate::wire::views::TokenView;
/// One page of `GET /v1/keys`.
pub type KeyPage = crate::wire::views::KeyList;
/// `POST /v1/keys/leaked`.
pub type LeakReport = crate::wire::views::LeakReportView;
/// `GET /v1/keys/{id}/usage`.
pub type UsageReport = crate::wire::views::KeyUsage;
/// `GET /v1/usage`.
pub type TeamUsageReport = crate::wire::views::TeamUsage;
/// Requests in one bucket or in total.
pub type UsageCounts = crate::domain::usage_range::Counts;
/// `GET /v1/keys/{id}/events`.
pub type KeyEvents = crate::wire::views::KeyEvents;
/// The counts of one hour or day.
pub type UsageBucket = crate::domain::usage_range::Bucket;
/// `GET /v1/tokens`.
pub type TokenList = crate::wire::views::TokenList;
/// One page of `GET /v1/audit`.
pub type AuditPage = crate::wire::views::AuditPage;
/// An audit log entry: the very type the service serves.
pub type AuditEntry = crate::domain::audit::AuditEntry;

/// A token just created or rotated, with its secret (which the answer must carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub token: Token,
    pub secret: String,
}

impl Reply for NewToken {
    const STATUS: u16 = 201;
    const BODY: Option<&'static str> = Some("a new token and its secret");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        let token: Token = json(body)?;
        match token.token.clone() {
            None => Err("no secret in it".into()),
            Some(secret) if !secret.starts_with("kgt_") || !secret.ends_with(&token.last4) => {
                Err("its secret does not match the token prefix and its last four".into())
            }
            Some(secret) => Ok(NewToken { token, secret }),
        }
    }
}

impl Reply for TokenList {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a list of tokens");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

impl Reply for LeakReport {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a leak report's outcome");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

impl Reply for AuditPage {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a page of audit entries");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

/// The service's error shape, `api::error::ApiError` on the wire.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// A success answer of the admin API: the status Keygate answers with and how its body reads.
pub trait Reply: Sized {
    const STATUS: u16;
    /// What the JSON body holds, for messages (`a key`); `None` when there is no body.
    const BODY: Option<&'static str>;
    /// Reads the body of an answer that came with `STATUS`; the error says what is wrong
    /// with it, without quoting it.
    fn from_body(body: &[u8]) -> Result<Self, String>;
}

impl Reply for Key {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a key");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

impl Reply for NewKey {
    const STATUS: u16 = 201;
    const BODY: Option<&'static str> = Some("a new key and its secret");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        let key: Key = json(body)?;
        match key.key.clone() {
            None => Err("no secret in it".into()),
            // A key's prefix and last four are cut from its secret.
            Some(secret) if !secret.starts_with(&key.prefix) || !secret.ends_with(&key.last4) => {
                Err("its secret does not match its prefix and last four".into())
            }
            Some(secret) => Ok(NewKey { key, secret }),
        }
    }
}

impl Reply for KeyPage {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a page of keys");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

impl Reply for UsageReport {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a usage report");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

impl Reply for TeamUsageReport {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a team usage report");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

impl Reply for KeyEvents {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a key's events");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json(body)
    }
}

impl Reply for Deleted {
    const STATUS: u16 = 204;
    const BODY: Option<&'static str> = None;
    fn from_body(_: &[u8]) -> Result<Self, String> {
        Ok(Deleted)
    }
}

/// One request, as messages name it: the service's base URL, `POST` and `/v1/keys` (no query).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub base_url: &'a str,
    pub method: &'a str,
    pub path: &'a str,
}

/// What came back: the status, the media type of `Content-Type` (lowercase, no parameters) and
/// up to `MAX_ANSWER_BYTES + 1` bytes of the body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub media_type: Option<String>,
    pub body: Vec<u8>,
}

/// `application/json` from `Application/JSON; charset=utf-8`.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The answer as `T` if it is Keygate's success answer to `call`; Keygate's own error answers
/// as `message (CODE, HTTP status)`; anything else as a message saying the server is not Keygate.
pub fn read<T: Reply>(call: Call, answer: &Answer) -> Result<T, ClientError> {
    if answer.body.len() > MAX_ANSWER_BYTES {
        let limit = format!("over {} MiB", MAX_ANSWER_BYTES / (1024 * 1024));
        return Err(ClientError::NotKeygate(not_keygate::<T>(
            call,
            answer,
            Some(&limit),
        )));
    }
    let is_json = answer.media_type.as_deref() == Some("application/json");
    if answer.status == T::STATUS {
        if T::BODY.is_some() && !is_json {
            return Err(ClientError::NotKeygate(not_keygate::<T>(
                call, answer, None,
            )));
        }
        return T::from_body(&answer.body).map_err(|problem| {
            ClientError::NotKeygate(not_keygate::<T>(call, answer, Some(&problem)))
        });
    }
    if (400..=599).contains(&answer.status) && is_json {
        if let Ok(ErrorAnswer { error }) = serde_json::from_slice(&answer.body) {
            return Err(ClientError::Refused(format!(
                "{} ({}, HTTP {})",
                error.message, error.code, answer.status
            )));
        }
    }
    Err(ClientError::NotKeygate(not_keygate::<T>(
        call, answer, None,
    )))
}

/// `http://127.0.0.1:8082 did not answer like a Keygate control service (POST /v1/keys → 200
/// text/html; expected 201 application/json with a new key and its secret)`.
fn not_keygate<T: Reply>(call: Call, answer: &Answer, problem: Option<&str>) -> String {
    let media_type = answer.media_type.as_deref().unwrap_or("no Content-Type");
    let problem = problem
        .map(|problem| format!(", {problem}"))
        .unwrap_or_default();
    let expected = match T::BODY {
        Some(body) => format!("{} application/json with {body}", T::STATUS),
        None => format!("{} and no body", T::STATUS),
    };
    format!(
        "{} did not answer like a Keygate control service ({} {} → {} {media_type}{problem}; \
         expected {expected})",
        call.base_url, call.method, call.path, answer.status
    )
}

/// The body as `T`. What is wrong is described by field name only: serde's own messages quote
/// the offending value, and a server that echoes requests would have the admin token in it.
pub(super) fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        Category::Data => {
            let message = error.to_string();
            match message.split_once(" at line ") {
                Some((missing, _)) if missing.starts_with("missing field `") => missing.into(),
                _ => "not the expected fields and types".into(),
            }
        }
        Category::Syntax | Category::Eof => "not valid JSON".into(),
        Category::Io => "unreadable".into(),
    })
}

#[cfg(test)]
mod tests;
