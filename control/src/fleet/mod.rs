//! Fleet-wide rate limits, the control service's side (`POST /v1/ratelimits/sync`): every Envoy
//! posts its absolute counts per limited key and window bucket; the answer is what the rest of
//! the fleet admitted, for the posted keys and for keys near their limit anywhere.
//!
//! - `frame`: which buckets of a sync are inside their window, and which are forgotten.
//! - `reply`: what makes a key hot; the answer's order and cap.
//! - `memory`: the counts in this process (one control service, SQLite; or a replica's own
//!   Envoys' counts and the fleet's totals it read from Redis).
//! - `redis`: replicas sharing their counts through Redis, flushed every 250 ms.
//! - `bounds`: what one Envoy can have admitted of a key, by the key's own limits; counts
//!   above it are refused, whichever store counts.
//! - `database`: the counts in the database (replicas sharing PostgreSQL without Redis: about
//!   ten Envoys); `written`: what this replica wrote there, so unchanged counts are not written
//!   again.

pub mod bounds;
mod database;
mod frame;
mod json_params;
mod memory;
pub mod redis;
mod reply;
#[cfg(test)]
mod tests;
mod written;

use crate::fleet::bounds::FleetBounds;
use crate::store::sql::Error;
use crate::store::Store;
use keygate_contract::fleet::{FleetSyncPost, FleetSyncReply};
use std::sync::Mutex;

/// A count above this is taken as this: no Envoy admits that many of a key in one bucket, and
/// sums over the fleet stay far from overflowing (PostgreSQL's BIGINT would refuse them).
pub const MAX_COUNT: u64 = 1_000_000_000_000;

/// Where the fleet's counts live.
pub enum FleetCounts {
    /// All of them in this process.
    Memory(Mutex<memory::Counts>),
    /// This replica's Envoys' counts in this process, shared with the other replicas through
    /// Redis (`redis::RedisLink` flushes them).
    Replicated(Mutex<memory::Counts>),
    Database(database::Database),
}

impl FleetCounts {
    /// Shared through Redis when there is one; else in the database when several replicas may
    /// share it, else in memory.
    pub fn for_store(store: &Store, redis: bool) -> FleetCounts {
        if redis {
            FleetCounts::Replicated(Mutex::new(memory::Counts::replicated()))
        } else if store.is_shared() {
            FleetCounts::Database(database::Database::default())
        } else {
            FleetCounts::Memory(Mutex::default())
        }
    }

    /// Runs `f` on the counts held in this process (`None` with the database backend).
    pub fn with_memory<T>(&self, f: impl FnOnce(&mut memory::Counts) -> T) -> Option<T> {
        match self {
            FleetCounts::Memory(counts) | FleetCounts::Replicated(counts) => {
                // Every count is absolute and re-sent, and a flush that did not finish is
                // written again, so a lock poisoned by a panic is taken over.
                let mut counts = counts
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                Some(f(&mut counts))
            }
            FleetCounts::Database(_) => None,
        }
    }

    /// Whether a post of only the buckets that changed (`fleet::BUCKETS_HEADER`) from
    /// `proxy_id` can be counted: not when this process keeps the whole fleet's counts in
    /// memory and holds none of the proxy's (it restarted), which would then lack the proxy's
    /// older buckets until they left their window. Replicas take it always: Redis or the
    /// database holds the fleet's counts of every key near a limit, whichever replica an
    /// Envoy's older posts reached.
    pub fn takes_changed_only(&self, proxy_id: &str) -> bool {
        match self {
            FleetCounts::Memory(_) => self
                .with_memory(|counts| counts.knows_proxy(proxy_id))
                .unwrap_or(true),
            FleetCounts::Replicated(_) | FleetCounts::Database(_) => true,
        }
    }

    /// The buckets counted for key `tag` (`keygate_contract::fleet::key_tag`) with the fleet's
    /// count in each, for the headroom read. A replica sees the fleet's totals of keys it
    /// publishes through Redis (every key near a limit) and its own Envoys' counts of others.
    pub fn buckets_of(
        &self,
        store: &Store,
        tag: &str,
    ) -> Result<Vec<(usize, u64, u64, u64)>, Error> {
        match self {
            FleetCounts::Database(_) => database::buckets_of(store, tag),
            held => Ok(held
                .with_memory(|counts| counts.buckets_of(tag))
                .unwrap_or_default()),
        }
    }

    /// Counts a validated `post` received at `now_ms` (Unix ms) and answers it; keys whose
    /// counts are above what one Envoy can admit (`bounds`) are not counted but named in the
    /// answer's `refused`. The limits index is held only while it is read (in memory, for the
    /// sync; with the database, before its transaction).
    pub fn sync(
        &self,
        store: &Store,
        post: &FleetSyncPost,
        now_ms: u64,
        bounds: &FleetBounds,
    ) -> Result<FleetSyncReply, Error> {
        match self {
            FleetCounts::Database(database) => database.sync(store, post, now_ms, bounds),
            held => Ok(held
                .with_memory(|counts| {
                    bounds.bounding(|bounding| counts.sync(post, now_ms, bounding))
                })
                .unwrap_or_default()),
        }
    }

    /// Drops the counts of proxy identity `owner` (revoked) that the fleet has not counted yet:
    /// all of them held in this process (what a replica flushed to Redis stays), or its rows
    /// in the database.
    pub fn forget_owner(&self, store: &Store, owner: &str) -> Result<(), Error> {
        match self {
            FleetCounts::Database(_) => {
                // Instance ids are `{owner}/…` (`domain::proxies::fleet_instance`): a prefix.
                let pattern = format!("{owner}/%");
                store.write_outside_feed(|tx| {
                    tx.execute(
                        "DELETE FROM fleet_counts WHERE proxy LIKE ?1",
                        [pattern.as_str()],
                    )
                })?;
                Ok(())
            }
            held => {
                held.with_memory(|counts| counts.forget_owner(owner));
                Ok(())
            }
        }
    }
}
