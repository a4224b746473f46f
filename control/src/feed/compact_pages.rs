//! Snapshot pages in the compact encoding (`keygate_contract::compact`): a full snapshot's
//! pages cut from the cached full snapshot (`full_snapshot.rs`) when it can serve them, every
//! other page read from the database (`pages::read_rows`) and encoded.

use crate::domain::cursor::{self, HashPosition};
use crate::domain::served::compact_record;
use crate::feed::error::{blocking, FeedError};
use crate::feed::full_snapshot::{CachedPage, SnapshotCache};
use crate::feed::pages::{read_rows, PageRequest, RowsPage};
use crate::feed::versions as feed;
use crate::store::Store;
use keygate_contract::compact::{self, PageHeader};
use keygate_contract::key_hash::{hex_digest, parse_hex_digest, Digest};
use std::sync::Arc;

/// Whether the request is for a full snapshot whatever the database says: a later page of one
/// in hash order, or a first page from a client with no versions of this epoch. (A client
/// whose version is ahead of the published one is left to `read_rows`, which decides with the
/// database's version.)
fn surely_full(request: &PageRequest, epoch: &str) -> bool {
    request.after_hash.is_some()
        || (request.first_page
            && (request.since.is_none() || request.epoch.as_deref() != Some(epoch)))
}

/// A page in the compact encoding: a full snapshot's pages from the cached full snapshot
/// (`full_snapshot.rs`) when it can serve them, everything else from the database.
pub async fn compact_page(
    store: &Arc<Store>,
    full_snapshot: &Arc<SnapshotCache>,
    request: PageRequest,
) -> Result<(Vec<u8>, String), FeedError> {
    let epoch = store.epoch();
    if surely_full(&request, epoch) {
        let cached = match &request.after_hash {
            None => Some(full_snapshot.for_first_page(store).await?),
            Some(position) => full_snapshot.at_least(epoch, position.version),
        };
        if let Some(cached) = cached {
            let after = request
                .after_hash
                .as_ref()
                .and_then(|position| parse_hex_digest(&position.hash));
            let page = cached.page(after.as_ref(), request.limit);
            // Later pages are checked against the first page's version, wherever they come from.
            let snapshot_version = request
                .after_hash
                .as_ref()
                .map_or(cached.version, |position| position.version);
            let body = cached_page(
                &cached.epoch,
                cached.version,
                snapshot_version,
                cached.key_count(),
                page,
            )?;
            return Ok((body, feed::etag(&cached.epoch, cached.version)));
        }
    }
    let page = blocking(store, move |store| read_rows(store, &request, true)).await?;
    let tag = feed::etag(store.epoch(), page.version);
    Ok((encode_rows(store.epoch(), page)?, tag))
}

fn cached_page(
    epoch: &str,
    version: u64,
    snapshot_version: u64,
    total_keys: usize,
    page: CachedPage<'_>,
) -> Result<Vec<u8>, FeedError> {
    let header = PageHeader {
        version,
        since: 0,
        full: true,
        epoch: epoch.to_string(),
        next_cursor: page.next_after.map(|hash| {
            cursor::encode_hash(&HashPosition {
                version: snapshot_version,
                hash: hex_digest(&hash),
            })
        }),
        total_keys: total_keys as u64,
    };
    let count = u32::try_from(page.count)
        .map_err(|_| FeedError::Encode("snapshot page too large".into()))?;
    compact::encode_page(&header, count, page.records, &[])
        .map_err(|error| FeedError::Encode(error.to_string()))
}

/// One page read from the database, in the compact encoding.
fn encode_rows(epoch: &str, page: RowsPage) -> Result<Vec<u8>, FeedError> {
    let now = page.now;
    let mut records = Vec::new();
    let mut count: u32 = 0;
    let mut deleted: Vec<Digest> = Vec::new();
    for row in page.rows {
        if row.deleted {
            deleted.extend(parse_hex_digest(&row.hash));
        } else if let Some(framed) = compact_record(row, now) {
            records.extend_from_slice(&framed);
            count = count.saturating_add(1);
        }
    }
    let header = PageHeader {
        version: page.version,
        since: page.since,
        full: page.full,
        epoch: epoch.to_string(),
        next_cursor: page.next_cursor,
        // Only the cached full snapshot knows its size without counting.
        total_keys: 0,
    };
    compact::encode_page(&header, count, &records, &deleted)
        .map_err(|error| FeedError::Encode(error.to_string()))
}
