//! A snapshot page request and the page read for it: which rows, in which order, and where the
//! next page starts. The versioning rules are `versions.rs`; the compact encoding of a page is
//! `compact_pages.rs`.

use crate::domain::clock;
use crate::domain::cursor::{self, HashPosition, Position};
use crate::domain::keys::StoredKey;
use crate::domain::served::key_record;
use crate::feed::versions::{self, PageKind, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_WAIT_SECONDS};
use crate::store::db::current_version;
use crate::store::keys;
use crate::store::sql::Error as StoreError;
use crate::store::Store;
use keygate_contract::snapshot::Snapshot;
use std::fmt;
use std::time::Duration;

/// The parameters of `GET /v1/snapshot` as sent.
#[derive(Debug, Default)]
pub struct PageQuery {
    pub since: Option<u64>,
    pub epoch: Option<String>,
    pub wait: Option<u64>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// A parameter of `GET /v1/snapshot` out of its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageRequestError {
    Limit,
    Wait,
    Cursor,
}

impl fmt::Display for PageRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageRequestError::Limit => write!(f, "limit: must be between 1 and {MAX_PAGE_SIZE}"),
            PageRequestError::Wait => {
                write!(f, "wait: must be between 1 and {MAX_WAIT_SECONDS} seconds")
            }
            PageRequestError::Cursor => write!(f, "cursor: not a cursor this service issued"),
        }
    }
}

/// A validated snapshot request.
pub struct PageRequest {
    pub since: Option<u64>,
    pub epoch: Option<String>,
    pub wait: Option<Duration>,
    pub limit: usize,
    /// Where the previous page ended; the start for the first page.
    after: Position,
    /// Where the previous page of a full snapshot in hash order ended.
    pub after_hash: Option<HashPosition>,
    pub first_page: bool,
}

impl PageRequest {
    /// Checks the parameters of `GET /v1/snapshot`.
    pub fn new(query: PageQuery) -> Result<PageRequest, PageRequestError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(PageRequestError::Limit);
        }
        let wait = match query.wait {
            None => None,
            Some(seconds @ 1..=MAX_WAIT_SECONDS) => Some(Duration::from_secs(seconds)),
            Some(_) => return Err(PageRequestError::Wait),
        };
        let after_hash = query.cursor.as_deref().and_then(cursor::decode_hash);
        let after = match (&after_hash, query.cursor.as_deref()) {
            (Some(_), _) | (None, None) => Position::default(),
            (None, Some(text)) => cursor::decode(text).ok_or(PageRequestError::Cursor)?,
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

    /// Whether the page is full or a delta, given the current epoch and version.
    pub fn kind(&self, current_epoch: &str, current_version: u64) -> PageKind {
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

/// The version the database has committed, which may be ahead of the one published on the
/// store's watch for a moment.
pub fn committed_version(store: &Store) -> Result<u64, StoreError> {
    store.read(current_version)
}

/// The rows of one page, read in a single transaction so its version and rows agree.
pub struct RowsPage {
    pub version: u64,
    pub full: bool,
    pub since: u64,
    pub now: chrono::DateTime<chrono::Utc>,
    /// Live keys and (in deltas) tombstones, in the page's order.
    pub rows: Vec<StoredKey>,
    pub next_cursor: Option<String>,
}

/// Reads one page. A full snapshot is listed in hash order when `by_hash` (the compact
/// encoding) or when the cursor is a hash position, in creation order otherwise (JSON, as it
/// always was).
pub fn read_rows(
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
pub fn json_page(store: &Store, request: &PageRequest) -> Result<Snapshot, StoreError> {
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
