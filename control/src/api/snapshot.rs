//! `GET /v1/snapshot`: full and delta pages of the key set for proxies, with ETags and
//! long polling, in JSON or in the compact encoding (`Accept`, `api/encoding.rs`);
//! `GET /v1/snapshot/polls`: how many long polls are held.

use crate::api::auth::SyncAuth;
use crate::api::encoding::{negotiate, Encoding};
use crate::api::error::ApiError;
use crate::api::extract::QueryParams;
use crate::api::keys::decode_cursor;
use crate::api::snapshot_compact::compact_page;
use crate::api::state::AppState;
use crate::domain::clock;
use crate::domain::cursor::{self, HashPosition, Position};
use crate::domain::keys::StoredKey;
use crate::domain::served::key_record;
use crate::feed::versions::{
    self, HeldPolls, PageKind, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_WAIT_SECONDS,
};
use crate::store::db::current_version;
use crate::store::keys;
use crate::store::sql::Error as StoreError;
use crate::store::Store;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keygate_contract::snapshot::Snapshot;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Deserialize)]
pub struct SnapshotQuery {
    since: Option<u64>,
    epoch: Option<String>,
    wait: Option<u64>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// A validated snapshot request.
pub(crate) struct PageRequest {
    pub(crate) since: Option<u64>,
    pub(crate) epoch: Option<String>,
    wait: Option<Duration>,
    pub(crate) limit: usize,
    /// Where the previous page ended; the start for the first page.
    after: Position,
    /// Where the previous page of a full snapshot in hash order ended.
    pub(crate) after_hash: Option<HashPosition>,
    pub(crate) first_page: bool,
}

impl PageRequest {
    fn from_query(query: SnapshotQuery) -> Result<PageRequest, ApiError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(ApiError::Validation(format!(
                "limit: must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        let wait = match query.wait {
            None => None,
            Some(seconds @ 1..=MAX_WAIT_SECONDS) => Some(Duration::from_secs(seconds)),
            Some(_) => {
                return Err(ApiError::Validation(format!(
                    "wait: must be between 1 and {MAX_WAIT_SECONDS} seconds"
                )))
            }
        };
        let after_hash = query.cursor.as_deref().and_then(cursor::decode_hash);
        let after = match after_hash {
            Some(_) => Position::default(),
            None => decode_cursor(query.cursor.as_deref())?,
        };
        Ok(PageRequest {
            since: query.since,
            epoch: query.epoch,
            wait,
            limit,
            after,
            after_hash,
            first_page: query.cursor.is_none(),
        })
    }

    fn kind(&self, current_epoch: &str, current_version: u64) -> PageKind {
        // Full pages leave the cursor's version at 0 (delta rows always have one above 0), or
        // page by hash: a full snapshot stays full to its last page even if the version moves
        // past `since`.
        if !self.first_page && self.after.version == 0 {
            return PageKind::Full;
        }
        versions::page_kind(
            current_epoch,
            current_version,
            self.epoch.as_deref(),
            self.since,
        )
    }
}

pub async fn snapshot(
    State(state): State<AppState>,
    _: SyncAuth,
    headers: HeaderMap,
    QueryParams(query): QueryParams<SnapshotQuery>,
) -> Result<Response, ApiError> {
    let encoding = negotiate(headers.get(ACCEPT).and_then(|value| value.to_str().ok()));
    let request = PageRequest::from_query(query)?;
    if request.first_page {
        let if_none_match = headers
            .get(IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok());
        if let Some(not_modified) =
            wait_for_news(&state, &state.held_polls, &request, if_none_match).await
        {
            return Ok(not_modified);
        }
    }
    let (body, tag) = match encoding {
        Encoding::Json => {
            let page = state
                .blocking(move |store| read_page(store, &request))
                .await?;
            let body = serde_json::to_vec(&page)
                .map_err(|error| ApiError::Internal(format!("encoding snapshot: {error}")))?;
            (body, versions::etag(&page.epoch, page.version))
        }
        Encoding::Compact => compact_page(&state, request).await?,
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

/// The answer of `GET /v1/snapshot/polls`.
#[derive(Debug, Serialize)]
pub struct HeldPollsView {
    /// Long polls waiting for the version to move right now.
    held: usize,
}

pub async fn held_polls(State(state): State<AppState>, _: SyncAuth) -> Json<HeldPollsView> {
    Json(HeldPollsView {
        held: state.held_polls.count(),
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
            state
                .blocking(|store| store.read(current_version))
                .await
                .unwrap_or(0)
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

/// The rows of one page, read in a single transaction so its version and rows agree.
pub(crate) struct RowsPage {
    pub(crate) version: u64,
    pub(crate) full: bool,
    pub(crate) since: u64,
    pub(crate) now: chrono::DateTime<chrono::Utc>,
    /// Live keys and (in deltas) tombstones, in the page's order.
    pub(crate) rows: Vec<StoredKey>,
    pub(crate) next_cursor: Option<String>,
}

/// Reads one page. A full snapshot is listed in hash order when `by_hash` (the compact
/// encoding) or when the cursor is a hash position, in creation order otherwise (JSON, as it
/// always was).
pub(crate) fn read_rows(
    store: &Store,
    request: &PageRequest,
    by_hash: bool,
) -> Result<RowsPage, StoreError> {
    let now = clock::now();
    store.read(|tx| {
        let version = current_version(tx)?;
        let kind = request.kind(store.epoch(), version);
        let (rows, next_cursor, since) = match kind {
            PageKind::Full if by_hash || request.after_hash.is_some() => {
                let after = request
                    .after_hash
                    .as_ref()
                    .map(|position| position.hash.as_str());
                let mut rows = keys::live_by_hash(tx, after, request.limit.saturating_add(1))?;
                let next_cursor = if rows.len() > request.limit {
                    rows.truncate(request.limit);
                    rows.last().map(|row| {
                        cursor::encode_hash(&HashPosition {
                            version: request
                                .after_hash
                                .as_ref()
                                .map_or(version, |position| position.version),
                            hash: row.hash.clone(),
                        })
                    })
                } else {
                    None
                };
                (rows, next_cursor, 0)
            }
            PageKind::Full => {
                let page = keys::all_live(tx, request.after, request.limit)?;
                (page.rows, page.next_after.map(cursor::encode), 0)
            }
            PageKind::Delta { since } => {
                let page = keys::changed_since(tx, since, request.after, request.limit)?;
                (page.rows, page.next_after.map(cursor::encode), since)
            }
        };
        Ok(RowsPage {
            version,
            full: kind == PageKind::Full,
            since,
            now,
            rows,
            next_cursor,
        })
    })
}

/// One JSON page.
fn read_page(store: &Store, request: &PageRequest) -> Result<Snapshot, StoreError> {
    let page = read_rows(store, request, false)?;
    let now = page.now;
    let (tombstones, live): (Vec<_>, Vec<_>) = page.rows.into_iter().partition(|row| row.deleted);
    Ok(Snapshot {
        version: page.version,
        epoch: store.epoch().to_string(),
        full: page.full,
        since: page.since,
        keys: live.into_iter().map(|key| key_record(key, now)).collect(),
        deleted: tombstones.into_iter().map(|row| row.hash).collect(),
        next_cursor: page.next_cursor,
    })
}
