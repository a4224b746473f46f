//! Fleet-wide rate limits, the control service's side (`POST /v1/ratelimits/sync`): every Envoy
//! posts its absolute counts per limited key and window bucket; the answer is what the rest of
//! the fleet admitted, for the posted keys and for keys near their limit anywhere.
//!
//! - `frame`: which buckets of a sync are inside their window, and which are forgotten.
//! - `reply`: what makes a key hot; the answer's order and cap.
//! - `memory`: the counts in this process (one control service, SQLite).
//! - `database`: the counts in the database (replicas sharing PostgreSQL); `written`: what
//!   this replica wrote there, so unchanged counts are not written again.

mod database;
mod frame;
mod memory;
mod reply;
#[cfg(test)]
mod tests;
mod written;

use crate::store::sql::Error;
use crate::store::Store;
use keygate_contract::fleet::{FleetSyncPost, FleetSyncReply};
use std::sync::Mutex;

/// A count above this is taken as this: no Envoy admits that many of a key in one bucket, and
/// sums over the fleet stay far from overflowing (PostgreSQL's BIGINT would refuse them).
pub const MAX_COUNT: u64 = 1_000_000_000_000;

/// Where the fleet's counts live.
pub enum FleetCounts {
    Memory(Mutex<memory::Counts>),
    Database(database::Database),
}

impl FleetCounts {
    /// In the database when several replicas may share it, else in memory.
    pub fn for_store(store: &Store) -> FleetCounts {
        if store.is_shared() {
            FleetCounts::Database(database::Database::default())
        } else {
            FleetCounts::Memory(Mutex::default())
        }
    }

    /// Counts a validated `post` received at `now_ms` (Unix ms) and answers it.
    pub fn sync(
        &self,
        store: &Store,
        post: &FleetSyncPost,
        now_ms: u64,
    ) -> Result<FleetSyncReply, Error> {
        match self {
            FleetCounts::Memory(counts) => {
                // A panic while counting cannot leave the counts half-raised in a way that
                // matters: every count is absolute and re-sent, so a poisoned lock is taken over.
                let mut counts = counts
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                Ok(counts.sync(post, now_ms))
            }
            FleetCounts::Database(database) => database.sync(store, post, now_ms),
        }
    }
}
