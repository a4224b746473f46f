//! `GET /v1/snapshot`: full and delta pages of the key set for proxies, with ETags and
//! long polling, in JSON or in the compact encoding (`Accept`, `api/encoding.rs`);
//! `GET /v1/snapshot/polls`: how many long polls are held.

use crate::api::auth::{sync_caller, SyncAuth};
use crate::api::encoding::{negotiate, Encoding};
use crate::api::error::ApiError;
use crate::api::extract::QueryParams;
use crate::api::state::{AppState, DeltaKey};
use crate::domain::clock;
use crate::feed::compact_pages::compact_page;
use crate::feed::delta_cache::EncodedPage;
use crate::feed::pages::{committed_version, json_page, PageQuery, PageRequest};
use crate::feed::versions::{self, HeldPolls};
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

#[derive(Debug, Deserialize)]
pub struct SnapshotQuery {
    since: Option<u64>,
    epoch: Option<String>,
    wait: Option<u64>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn snapshot(
    State(state): State<AppState>,
    SyncAuth(caller): SyncAuth,
    headers: HeaderMap,
    QueryParams(query): QueryParams<SnapshotQuery>,
) -> Result<Response, ApiError> {
    if let Some(identity) = caller.proxy() {
        // A later page of a full snapshot still holds nothing: it reads as version 0.
        let held = query
            .since
            .filter(|_| query.epoch.as_deref() == Some(state.store.epoch()));
        state
            .proxies
            .presence
            .read_snapshot(&identity.id, held, clock::now());
    }
    let encoding = negotiate(headers.get(ACCEPT).and_then(|value| value.to_str().ok()));
    let request = PageRequest::new(PageQuery {
        since: query.since,
        epoch: query.epoch,
        wait: query.wait,
        limit: query.limit,
        cursor: query.cursor,
    })
    .map_err(|error| ApiError::Validation(error.to_string()))?;
    if request.first_page {
        let if_none_match = headers
            .get(IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok());
        if let Some(not_modified) =
            wait_for_news(&state, &state.held_polls, &request, if_none_match).await
        {
            return Ok(not_modified);
        }
        if caller.proxy().is_some() {
            // Revoked while it waited: it gets nothing more.
            sync_caller(&state, &headers).await?;
        }
    }
    let published = *state.store.subscribe().borrow();
    let (body, tag) = match cacheable_delta(&request, state.store.epoch(), published, encoding) {
        Some(key) => {
            let page = state
                .delta_pages
                .get_or_build(key, || encoded_page(&state, request, encoding))
                .await?;
            (page.body, page.etag)
        }
        None => {
            let page = encoded_page(&state, request, encoding).await?;
            (page.body, page.etag)
        }
    };
    Ok((
        StatusCode::OK,
        [
            (CONTENT_TYPE, encoding.content_type().to_string()),
            (ETAG, tag),
            (CACHE_CONTROL, "no-store".to_string()),
            (VARY, "accept".to_string()),
        ],
        Body::from(body),
    )
        .into_response())
}

/// The cache key of a request every proxy at one version sends after a change: the first page
/// of a delta of this epoch since a version the watch has published. Anything else (full
/// snapshots, later pages, a client ahead of the watch) is read as it comes.
fn cacheable_delta(
    request: &PageRequest,
    epoch: &str,
    published: u64,
    encoding: Encoding,
) -> Option<DeltaKey> {
    match request.since {
        Some(since)
            if request.first_page
                && request.epoch.as_deref() == Some(epoch)
                && since <= published =>
        {
            Some(DeltaKey {
                since,
                version: published,
                encoding,
                limit: request.limit,
            })
        }
        _ => None,
    }
}

/// Reads and encodes one page (the uncached path, and the build of a cached one).
async fn encoded_page(
    state: &AppState,
    request: PageRequest,
    encoding: Encoding,
) -> Result<EncodedPage, ApiError> {
    let (body, etag) = match encoding {
        Encoding::Json => {
            let page = state
                .blocking(move |store| json_page(store, &request))
                .await?;
            let body = serde_json::to_vec(&page)
                .map_err(|error| ApiError::Internal(format!("encoding snapshot: {error}")))?;
            (body, versions::etag(&page.epoch, page.version))
        }
        Encoding::Compact => compact_page(&state.store, &state.full_snapshot, request).await?,
    };
    Ok(EncodedPage {
        body: Bytes::from(body),
        etag,
    })
}

/// The answer of `GET /v1/snapshot/polls`.
#[derive(Debug, Serialize)]
pub struct HeldPollsView {
    /// Long polls waiting for the version to move right now.
    held: usize,
    /// Delta pages read and encoded since start (one per version and request shape, however
    /// many polls took it).
    delta_pages_built: u64,
    /// Bytes of encoded delta pages held for sharing.
    delta_cache_bytes: usize,
    /// Bytes of the full snapshot cached for starting proxies (records and their index; 0
    /// while none is cached).
    full_snapshot_bytes: usize,
}

pub async fn held_polls(State(state): State<AppState>, _: SyncAuth) -> Json<HeldPollsView> {
    Json(HeldPollsView {
        held: state.held_polls.count(),
        delta_pages_built: state.delta_pages.builds(),
        delta_cache_bytes: state.delta_pages.bytes(),
        full_snapshot_bytes: state.full_snapshot.bytes(),
    })
}

/// `None` when there is something to send; otherwise holds the request for up to `wait` until
/// the version moves, answering 304 if it does not. Waits on the version watch only: no
/// database connection or thread is held meanwhile.
async fn wait_for_news(
    state: &AppState,
    held_polls: &HeldPolls,
    request: &PageRequest,
    if_none_match: Option<&str>,
) -> Option<Response> {
    let epoch = state.store.epoch();
    let mut versions = state.store.subscribe();
    let mut shutting_down = state.shutting_down.clone();
    let deadline = request.wait.map(|wait| Instant::now() + wait);
    // Counted from after the first look at the version, so a change committed once the count
    // shows this poll is one `versions.changed()` reports; released on every way out, including
    // this future being dropped when the client goes away.
    let mut held = None;
    // A commit is in the database a moment before its version is published on the watch, so a
    // client may already hold a version the watch has not reached. Such a client is not ahead
    // of us (that would call for a full snapshot): take its version as ours and wait for news.
    let committed = match request.since {
        Some(since) if request.epoch.as_deref() == Some(epoch) && since > *versions.borrow() => {
            state.blocking(committed_version).await.unwrap_or(0)
        }
        _ => 0,
    };
    loop {
        let published = *versions.borrow_and_update();
        let version = match request.since {
            Some(since) if since > published && since <= committed => since,
            _ => published,
        };
        let tag = versions::etag(epoch, version);
        if !versions::is_not_modified(request.kind(epoch, version), version, if_none_match, &tag) {
            return None;
        }
        let Some(deadline) = deadline else {
            return Some(not_modified(tag));
        };
        held.get_or_insert_with(|| held_polls.hold());
        tokio::select! {
            changed = tokio::time::timeout_at(deadline, versions.changed()) => {
                if !matches!(changed, Ok(Ok(()))) {
                    return Some(not_modified(tag));
                }
            }
            _ = shutting_down.wait_for(|stopping| *stopping) => return Some(not_modified(tag)),
        }
    }
}

fn not_modified(tag: String) -> Response {
    (
        StatusCode::NOT_MODIFIED,
        [(ETAG, tag), (VARY, "accept".to_string())],
    )
        .into_response()
}
