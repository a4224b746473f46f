//! Reports of leaked keys: `POST /v1/secret-scanning/github` (GitHub's secret scanning partner
//! program: no admin token, a signature over the body instead) and `POST /v1/keys/leaked` (a
//! person with the key in hand). Both apply the service's leak policy through `app::leaks`.
//! A reported secret is hashed at once and never logged, stored or answered.

use crate::api::access::Caller;
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, RawJsonBody};
use crate::api::state::AppState;
use crate::app;
use crate::app::leaks::{github_actor, LeakReport};
use crate::domain::clock;
use crate::domain::leaks::KeyLeak;
use crate::domain::secret_scanning::{parse_report, Label, TokenFeedback};
use crate::wire::leaks::LeakedKeyRequest;
use crate::wire::views::{KeyView, LeakReportView};
use axum::extract::{FromRequest, Request, State};
use axum::http::HeaderMap;
use axum::Json;
use keygate_contract::key_format::{self, KeyShape};
use keygate_contract::key_hash::hash_key;

/// Largest report read: about 15,000 tokens with GitHub's fields (a report of a big push).
pub const MAX_SCANNING_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Whether `token` could be a key Keygate issued: the shape of either format, and a checksum
/// that holds if it has one. Anything else is answered unknown without a lookup.
fn could_be_ours(token: &str) -> bool {
    matches!(
        key_format::classify(token),
        KeyShape::Legacy { .. }
            | KeyShape::Checksummed {
                checksum_ok: true,
                ..
            }
    )
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The endpoint needs no token, so what is cheap is checked before what is not: the service
/// must be configured and the request must name a key it trusts before a byte of the body is
/// read; hashing and verifying up to 4 MiB then runs off the async workers.
pub async fn github_report(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Vec<TokenFeedback>>, ApiError> {
    let Some(keys_file) = state.scanning_keys.clone() else {
        return Err(ApiError::BadSignature(
            "secret scanning is not configured on this service (serve --secret-scanning-keys)",
        ));
    };
    let headers = request.headers();
    let identifier = header(headers, "github-public-key-identifier").map(str::to_string);
    let signature = header(headers, "github-public-key-signature").map(str::to_string);
    let keys = tokio::task::spawn_blocking(move || keys_file.current())
        .await
        .map_err(|error| ApiError::Internal(format!("reading the scanning keys: {error}")))?;
    let key = keys
        .precheck(identifier.as_deref(), signature.as_deref())
        .map_err(|error| ApiError::BadSignature(error.message()))?
        .clone();
    let signature = signature.unwrap_or_default();
    let RawJsonBody(body) =
        RawJsonBody::<MAX_SCANNING_BODY_BYTES>::from_request(request, &state).await?;
    let verified =
        tokio::task::spawn_blocking(move || key.verify(&signature, &body).map(|()| body))
            .await
            .map_err(|error| ApiError::Internal(format!("verifying a report: {error}")))?;
    let body = verified.map_err(|error| ApiError::BadSignature(error.message()))?;
    let report = parse_report(&body).map_err(ApiError::InvalidJson)?;
    let now = clock::now();
    let mut hashes = Vec::with_capacity(report.tokens.len());
    let mut leaks = Vec::new();
    for token in &report.tokens {
        let hash = hash_key(&token.token);
        if could_be_ours(&token.token) {
            leaks.push(LeakReport {
                hash: hash.clone(),
                leak: KeyLeak::new(
                    "github",
                    token.url.as_deref(),
                    token.source.as_deref(),
                    token.token_type.as_deref(),
                    now,
                ),
            });
        }
        hashes.push((hash, token.token_type.clone().unwrap_or_default()));
    }
    let policy = state.leak_policy;
    let candidates = leaks.len();
    let outcomes = state
        .blocking(move |store| app::leaks::report(store, &github_actor(), &leaks, policy, now))
        .await?;
    println!(
        "secret scanning: GitHub reported {} tokens ({} skipped), {candidates} of Keygate's \
         shape, {} live keys found (policy {})",
        hashes.len(),
        report.skipped,
        outcomes.len(),
        policy.as_str()
    );
    let feedback = hashes
        .into_iter()
        .map(|(token_hash, token_type)| TokenFeedback {
            label: if outcomes.contains_key(&token_hash) {
                Label::TruePositive
            } else {
                Label::FalsePositive
            },
            token_hash,
            token_type,
        })
        .collect();
    Ok(Json(feedback))
}

pub async fn report_leaked_key(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<LeakedKeyRequest>,
) -> Result<Json<LeakReportView>, ApiError> {
    request.validate()?;
    let now = clock::now();
    let hash = hash_key(&request.key);
    let report = LeakReport {
        hash: hash.clone(),
        leak: KeyLeak::new(
            "manual",
            request.url.as_deref(),
            request.source.as_deref(),
            None,
            now,
        ),
    };
    let policy = state.leak_policy;
    let mut outcomes = state
        .blocking(move |store| app::leaks::report(store, &caller.actor, &[report], policy, now))
        .await?;
    let outcome = outcomes
        .remove(&hash)
        .ok_or_else(|| ApiError::NotFound("no such key".into()))?;
    Ok(Json(LeakReportView {
        key: KeyView::at(outcome.key, now),
        policy: policy.as_str().into(),
        deactivated: outcome.deactivated,
    }))
}
