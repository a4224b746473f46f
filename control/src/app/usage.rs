//! Usage: counting a proxy's batch once (and re-marking the quotas it touched), reading a key's
//! or a team's hours back, and pruning old hours.

use crate::app::error::LifecycleError;
use crate::app::keys::find_visible;
use crate::app::quota;
use crate::domain::audit::Actor;
use crate::domain::usage_range::HourCount;
use crate::domain::usage_report::BatchOutcome;
use crate::domain::usage_report::UsageBatch;
use crate::store::db::Store;
use crate::store::sql::Error;
use crate::store::usage::{self, count_reports, earlier_outcome, remember_batch, Pruned};
use chrono::{DateTime, Utc};

/// Counts `batch` unless its id was counted before, then re-marks the keys it touched; one
/// transaction, so a batch is either counted with its id remembered or not at all.
pub fn record(
    store: &Store,
    batch: &UsageBatch,
    now: DateTime<Utc>,
) -> Result<BatchOutcome, Error> {
    store.write(|tx| {
        if let Some(outcome) = earlier_outcome(tx, &batch.batch_id)? {
            return Ok(outcome);
        }
        let (outcome, touched) = count_reports(tx, batch)?;
        remember_batch(tx, batch, outcome, now)?;
        quota::refresh_marks(tx, &touched, now)?;
        Ok(outcome)
    })
}

/// The hours of key `key_id` starting in `[from, to)` (Unix seconds), if `actor` may see the key.
pub fn key_hours(
    store: &Store,
    actor: &Actor,
    key_id: &str,
    from: i64,
    to: i64,
) -> Result<Vec<HourCount>, LifecycleError> {
    store.read(|tx| {
        find_visible(tx, actor, key_id)?;
        Ok(usage::hours(tx, key_id, from, to)?)
    })
}

/// The hours of `team`'s keys (every key's when `None`) starting in `[from, to)`.
pub fn team_hours(
    store: &Store,
    team: Option<&str>,
    from: i64,
    to: i64,
) -> Result<Vec<HourCount>, Error> {
    store.read(|tx| usage::team_hours(tx, team, from, to))
}

/// Rolls hours before `cutoff` into days and forgets old batch ids, in one transaction.
pub fn prune(store: &Store, cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Result<Pruned, Error> {
    store.write(|tx| usage::prune(tx, cutoff, now))
}

#[cfg(test)]
mod tests;
