//! Keeps `LimitsIndex` from the change feed: every key row changed since the version it read
//! up to (all of them the first time), a page at a time, in the feed's own order (the
//! `keys_by_updated_version` index). A plan's change re-stamps its keys' versions
//! (`keys::stamp_plan`), so their new limits come with them. Cost: one read per key change
//! (and the whole key set once at start), none per sync.

use super::{tag_bytes, FleetBounds, Held};
use crate::domain::clock;
use crate::domain::cursor::Position;
use crate::domain::keys::StoredKey;
use crate::domain::plans::effective_limits;
use crate::domain::plausibility::limits_changed_at;
use crate::store::db::current_version;
use crate::store::keys;
use crate::store::plans;
use crate::store::sql::Error;
use crate::store::Store;
use chrono::{DateTime, Utc};
use keygate_contract::fleet::{key_tag_of_hash, window_limits};
use std::collections::HashMap;

/// Rows read per transaction, so the first load holds no transaction for the whole key set.
const PAGE_ROWS: usize = 5_000;

/// Reads every key change since the index's version into it; answers the rows read.
pub fn refresh(store: &Store, bounds: &FleetBounds) -> Result<usize, Error> {
    let since = bounds.index().version;
    let target = store.read(current_version)?;
    if target <= since && bounds.index().loaded {
        return Ok(0);
    }
    let mut after = Position::default();
    let mut read = 0;
    let mut newest = since;
    loop {
        // The plans' change times from the same transaction as the rows, so a plan changed
        // between two reads cannot pass for settled.
        let (page, plans_changed) = store.read(|tx| {
            Ok::<_, Error>((
                keys::changed_since(tx, since, after, PAGE_ROWS)?,
                plans::changed_at(tx)?,
            ))
        })?;
        read += page.rows.len();
        let seen_at_ms = clock::now_ms();
        bounds.update(|index| {
            for key in &page.rows {
                let Some(tag) = key_tag_of_hash(&key.hash).as_deref().and_then(tag_bytes) else {
                    continue;
                };
                index.apply(tag, held(key, &plans_changed), seen_at_ms);
            }
        });
        newest = page
            .rows
            .iter()
            .map(|key| key.updated_version)
            .fold(newest, u64::max);
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    bounds.update(|index| {
        // Versions commit one after another (`bump_version` serialises writers), so every row
        // up to `target`, read before the pages, has been read; versions that changed no key
        // (or only ones read already) are passed too.
        index.version = newest.max(target);
        index.loaded = true;
    });
    Ok(read)
}

/// What the index holds for `key`: its window limits (its own, else its plan's) and when they
/// last changed, or nothing for a deleted key.
fn held(key: &StoredKey, plans_changed: &HashMap<String, DateTime<Utc>>) -> Option<Held> {
    if key.deleted {
        return None;
    }
    let limits = window_limits(&effective_limits(&key.plan_limits, &key.limits));
    let changed = limits_changed_at(key, plans_changed);
    Some(Held {
        limits,
        changed_at_ms: changed.map_or(0, |at| u64::try_from(at.timestamp_millis()).unwrap_or(0)),
    })
}
