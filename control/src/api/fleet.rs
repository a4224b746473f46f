//! `POST /v1/ratelimits/sync`: an Envoy posts what it admitted per limited key and window
//! bucket (absolute counts) and is answered what the rest of the fleet admitted
//! (`keygate_contract::fleet`). Authenticated like `POST /v1/usage`: a proxy's own credential
//! (its counts are kept under its identity) or the shared sync token.
//!
//! Both messages travel in JSON or in the compact binary encoding
//! (`keygate_contract::fleet::binary`): the post as its `Content-Type` says, the answer as
//! `Accept` asks (`api/encoding.rs`; JSON unless the binary type is named), with `Vary: accept`.
//! Either way the post passes the same `fleet::validate_post` before anything is counted.
//!
//! A key whose counts from the posting proxy are above what one Envoy can admit
//! (`fleet::bounds`) is not counted; the JSON answer names it in `refused`, the refusal is
//! counted in `/metrics` and raised as `proxy.implausible_report` (`server/fleet_bounds.rs`).
//!
//! A post marked as carrying only the buckets that changed (`fleet::BUCKETS_HEADER`) is
//! answered 409 when this process lost the proxy's counts (`FleetCounts::takes_changed_only`):
//! the Envoy posts every bucket at once.

use crate::api::auth::SyncAuth;
use crate::api::encoding::prefers;
use crate::api::error::ApiError;
use crate::api::extract::{declares, declares_json, parse_json, read_body, MAX_PROXY_BODY_BYTES};
use crate::api::state::AppState;
use crate::api::usage::reserved_proxy_id;
use crate::app::proxies::presence::Outcome;
use crate::domain::clock;
use crate::domain::proxies::fleet_instance;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE, VARY};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keygate_contract::fleet::{self, binary, FleetSyncPost};
use std::sync::Arc;

// The status Envoys take as "post every bucket" is the one a `Conflict` answers with.
const _: () =
    assert!(axum::http::StatusCode::CONFLICT.as_u16() == fleet::RESEND_EVERY_BUCKET_STATUS);

/// The body types a sync may be posted as, as a 415 names them.
const SYNC_TYPES: &str = "application/json or application/vnd.keygate.fleet-sync+binary";

/// A sync post in the encoding its `Content-Type` names (none: JSON). A binary body that does
/// not decode is `VALIDATION_ERROR` naming what was being read; a JSON one is read as every
/// JSON body is (`api/extract.rs`).
pub struct SyncPost(pub FleetSyncPost);

impl<S: Send + Sync> FromRequest<S> for SyncPost {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_binary = declares(request.headers(), binary::MEDIA_TYPE);
        let is_json = declares_json(request.headers());
        let bytes = read_body(request, state, MAX_PROXY_BODY_BYTES).await?;
        if is_binary {
            binary::decode_post(&bytes)
                .map(SyncPost)
                .map_err(|error| ApiError::Validation(format!("body: {error}")))
        } else if is_json {
            parse_json(&bytes).map(SyncPost)
        } else {
            Err(ApiError::UnsupportedMediaType {
                expected: SYNC_TYPES,
            })
        }
    }
}

pub async fn sync_fleet(
    State(state): State<AppState>,
    SyncAuth(caller): SyncAuth,
    headers: HeaderMap,
    SyncPost(mut post): SyncPost,
) -> Result<Response, ApiError> {
    let Some(identity) = caller.proxy().cloned() else {
        reserved_proxy_id(&post.proxy_id)?;
        return sync(state, headers, post).await;
    };
    // Counted under who it is: its identity, then the instance id it gives itself.
    post.proxy_id = fleet_instance(&identity.id, &post.proxy_id);
    let now = clock::now();
    let answered = sync(state.clone(), headers, post).await;
    let outcome = if answered.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    state.proxies.presence.sync(&identity.id, outcome, now);
    answered
}

async fn sync(
    state: AppState,
    headers: HeaderMap,
    post: FleetSyncPost,
) -> Result<Response, ApiError> {
    fleet::validate_post(&post)?;
    let changed_only = headers
        .get(fleet::BUCKETS_HEADER)
        .is_some_and(|value| value.as_bytes() == fleet::BUCKETS_CHANGED.as_bytes());
    let now_ms = clock::now_ms();
    let counts = Arc::clone(&state.fleet);
    let fleet_bounds = Arc::clone(&state.fleet_bounds);
    let proxy_id = post.proxy_id.clone();
    // Checked on the blocking pool with the sync: it takes the counts' lock.
    let reply = state
        .blocking(move |store| {
            if changed_only && !counts.takes_changed_only(&post.proxy_id) {
                return Ok(None);
            }
            counts.sync(store, &post, now_ms, &fleet_bounds).map(Some)
        })
        .await?;
    let Some(reply) = reply else {
        return Err(ApiError::Conflict(format!(
            "this control service holds no counts of proxy {proxy_id:?} (it restarted): post every bucket, without {}",
            fleet::BUCKETS_HEADER
        )));
    };
    state.fleet_bounds.refused(&proxy_id, &reply.refused);
    let accept = headers.get(ACCEPT).and_then(|value| value.to_str().ok());
    if prefers(accept, binary::MEDIA_TYPE) {
        let body = binary::encode_reply(&reply)
            .map_err(|error| ApiError::Internal(format!("encoding a fleet sync reply: {error}")))?;
        let headers = [(CONTENT_TYPE, binary::MEDIA_TYPE), (VARY, "accept")];
        return Ok((headers, body).into_response());
    }
    Ok(([(VARY, "accept")], Json(reply)).into_response())
}
