//! Usage: counting a proxy's batch once (and re-marking the quotas it touched), reading a key's
//! or a team's hours back, and pruning old hours.

use crate::app::error::LifecycleError;
use crate::app::keys::find_visible;
use crate::app::{alerts, quota};
use crate::domain::alerts::AlertSettings;
use crate::domain::audit::Actor;
use crate::domain::events::EventRange;
use crate::domain::keys::StoredKey;
use crate::domain::quota::{self as periods, QuotaUsage};
use crate::domain::usage_range::{HourCount, SketchRow};
use crate::domain::usage_report::BatchOutcome;
use crate::domain::usage_report::{KeyEvent, UsageBatch};
use crate::store::db::Store;
use crate::store::events;
use crate::store::ip_sketch;
use crate::store::sql::Error;
use crate::store::usage::{
    self, count_reports, earlier_outcome, forget_old_batches, remember_batch, Pruned,
};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Counts `batches` in one transaction and returns each one's outcome, in order: a batch is
/// either counted with its id remembered or not at all, then the keys they touched are
/// re-marked. A batch id counted before (or earlier in the group) is answered as the duplicate
/// it is. Entries claiming more than a proxy could have allowed are left out of their batch's
/// count, named in its outcome and raised as `proxy.implausible_report`.
pub fn record_group(
    store: &Store,
    batches: &[UsageBatch],
    now: DateTime<Utc>,
    settings: &AlertSettings,
    max_proxy_rate: u64,
) -> Result<Vec<BatchOutcome>, Error> {
    store.write(|tx| {
        let mut outcomes: Vec<Option<BatchOutcome>> = vec![None; batches.len()];
        // Index of the first batch of each id in the group, and the batches to count.
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let mut fresh: Vec<usize> = Vec::new();
        for (index, batch) in batches.iter().enumerate() {
            if first_of.contains_key(batch.batch_id.as_str()) {
                continue;
            }
            first_of.insert(&batch.batch_id, index);
            match earlier_outcome(tx, &batch.batch_id)? {
                Some(outcome) => outcomes[index] = Some(outcome),
                None => fresh.push(index),
            }
        }
        let counted: Vec<&UsageBatch> = fresh.iter().map(|&index| &batches[index]).collect();
        if !counted.is_empty() {
            let (counted_outcomes, touched) = count_reports(tx, &counted, max_proxy_rate)?;
            let mut implausible = Vec::new();
            for (&index, outcome) in fresh.iter().zip(&counted_outcomes) {
                remember_batch(tx, &batches[index], outcome, now)?;
                if !outcome.refused.is_empty() {
                    implausible.push((&batches[index], outcome.refused.clone()));
                }
            }
            alerts::implausible_reports(tx, &implausible, now)?;
            forget_old_batches(tx, now)?;
            quota::refresh_marks(tx, &touched, now, settings)?;
            let counted_with: Vec<(&UsageBatch, &BatchOutcome)> =
                counted.iter().copied().zip(&counted_outcomes).collect();
            alerts::count_refusals(tx, &counted_with, &touched, settings, now)?;
            for (&index, outcome) in fresh.iter().zip(counted_outcomes) {
                outcomes[index] = Some(outcome);
            }
        }
        batches
            .iter()
            .enumerate()
            .map(|(index, batch)| {
                let first = first_of.get(batch.batch_id.as_str()).copied();
                let earlier = first.and_then(|first| outcomes[first].clone());
                match (outcomes[index].clone(), earlier) {
                    (Some(outcome), _) => Ok(outcome),
                    (None, Some(first)) => Ok(BatchOutcome {
                        duplicate: true,
                        refused: Vec::new(),
                        ..first
                    }),
                    (None, None) => Err(Error::Schema("a batch was left uncounted".into())),
                }
            })
            .collect()
    })
}

/// The hours of key `key_id` starting in `[from, to)` (Unix seconds), if `actor` may see the key.
pub fn key_hours(
    store: &Store,
    actor: &Actor,
    key_id: &str,
    from: i64,
    to: i64,
) -> Result<(Vec<HourCount>, Vec<SketchRow>), LifecycleError> {
    store.read(|tx| {
        find_visible(tx, actor, key_id)?;
        Ok((
            usage::hours(tx, key_id, from, to)?,
            ip_sketch::for_key(tx, key_id, from, to)?,
        ))
    })
}

/// The hours of `team`'s keys (every key's when `None`) starting in `[from, to)`.
pub fn team_hours(
    store: &Store,
    team: Option<&str>,
    from: i64,
    to: i64,
) -> Result<(Vec<HourCount>, Vec<SketchRow>), Error> {
    store.read(|tx| {
        Ok((
            usage::team_hours(tx, team, from, to)?,
            ip_sketch::for_team(tx, team, from, to)?,
        ))
    })
}

/// The newest events of key `key_id` that `range` asks for, if `actor` may see the key.
pub fn key_events(
    store: &Store,
    actor: &Actor,
    key_id: &str,
    range: &EventRange,
) -> Result<Vec<KeyEvent>, LifecycleError> {
    store.read(|tx| {
        find_visible(tx, actor, key_id)?;
        Ok(events::for_key(tx, key_id, range)?)
    })
}

/// Key `key_id` (if `actor` may see it) with its allowed requests this UTC day and month.
pub fn key_with_quota_use(
    store: &Store,
    actor: &Actor,
    key_id: &str,
    now: DateTime<Utc>,
) -> Result<(StoredKey, QuotaUsage), LifecycleError> {
    store.read(|tx| {
        let key = find_visible(tx, actor, key_id)?;
        let sums = usage::allowed_sums(tx, &[key_id], periods::periods(now))?;
        let [today, this_month] = sums.get(key_id).copied().unwrap_or_default();
        Ok((key, QuotaUsage { today, this_month }))
    })
}

/// Rolls hours before `cutoff` into days, forgets old batch ids and the events the retention
/// lets go (older than `event_cutoff_ms`, or beyond a key's newest `events_per_key`), in one
/// transaction.
pub fn prune(
    store: &Store,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    event_cutoff_ms: i64,
    events_per_key: u32,
) -> Result<Pruned, Error> {
    store.write(|tx| {
        let mut pruned = usage::prune(tx, cutoff, now)?;
        pruned.events = events::prune(tx, event_cutoff_ms, events_per_key)?;
        Ok(pruned)
    })
}

#[cfg(test)]
pub(crate) mod tests;
