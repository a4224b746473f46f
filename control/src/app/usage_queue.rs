//! Usage reports written in groups: while one transaction counts what arrived, the reports that
//! arrive meanwhile queue, and the next transaction counts all of them at once.
//!
//! Why: each report is one transaction that adds to the same rows as every other proxy's (a
//! big customer's key and hour), and a row's writers wait for each other until commit. One
//! transaction per report held those row locks a thousand times a second at 1,000 proxies, and
//! the reports queued behind them until they timed out (`make bench-usage`, docs/benchmarks.md).
//! Grouped, a replica holds them once per transaction, whatever the number of proxies. Nothing
//! waits for a group to fill: with no transaction running, a report is written at once.
//!
//! Cost per proxy: one queue entry per report; per group: a handful of statements (the
//! reports' rows are summed per key, hour and code first) and one commit.

use crate::app::usage::record_group;
use crate::domain::alerts::AlertSettings;
use crate::domain::clock;
use crate::domain::plausibility::DEFAULT_MAX_PROXY_RATE;
use crate::domain::usage_report::{BatchOutcome, UsageBatch};
use crate::store::sql::Error;
use crate::store::Store;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Batches one transaction counts at most; the rest wait for the next.
const MAX_GROUP: usize = 256;

/// Why a report's group was not counted (every report of the group gets the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupFailure {
    /// The database could not be reached in time: retry (the batch id keeps it counted once).
    Unavailable(String),
    Failed(String),
    /// Its proxy was revoked while it waited: it is not counted.
    Revoked,
}

type Waiter = oneshot::Sender<Result<BatchOutcome, GroupFailure>>;

pub struct UsageQueue {
    pending: Mutex<Pending>,
    /// When the groups' quota and refusal alerts fire.
    alerts: AlertSettings,
    /// `--max-proxy-rate`: the bound on entries of keys without limits.
    max_proxy_rate: u64,
}

impl Default for UsageQueue {
    fn default() -> Self {
        UsageQueue::new(AlertSettings::default(), DEFAULT_MAX_PROXY_RATE)
    }
}

#[derive(Default)]
struct Pending {
    batches: Vec<(UsageBatch, Waiter)>,
    /// A writer is draining the queue: new batches only join it.
    writing: bool,
}

impl UsageQueue {
    pub fn new(alerts: AlertSettings, max_proxy_rate: u64) -> UsageQueue {
        UsageQueue {
            pending: Mutex::default(),
            alerts,
            max_proxy_rate,
        }
    }

    /// Counts `batch` with whatever else is queued and returns its outcome.
    pub async fn record(
        self: &Arc<Self>,
        store: &Arc<Store>,
        batch: UsageBatch,
    ) -> Result<BatchOutcome, GroupFailure> {
        let (sender, receiver) = oneshot::channel();
        let start_writer = {
            let mut pending = self.lock();
            pending.batches.push((batch, sender));
            !std::mem::replace(&mut pending.writing, true)
        };
        if start_writer {
            let queue = Arc::clone(self);
            // Not awaited: the writer outlives this request if it is cancelled.
            tokio::task::spawn(queue.drain(Arc::clone(store)));
        }
        receiver
            .await
            .map_err(|_| GroupFailure::Failed("the usage writer stopped".into()))?
    }

    /// Writes groups until the queue is empty, then lets the next report start a writer.
    async fn drain(self: Arc<Self>, store: Arc<Store>) {
        loop {
            let group: Vec<(UsageBatch, Waiter)> = {
                let mut pending = self.lock();
                if pending.batches.is_empty() {
                    pending.writing = false;
                    return;
                }
                let take = pending.batches.len().min(MAX_GROUP);
                pending.batches.drain(..take).collect()
            };
            let (batches, waiters): (Vec<UsageBatch>, Vec<Waiter>) = group.into_iter().unzip();
            let (alerts, rate) = (self.alerts, self.max_proxy_rate);
            let written = store
                .run_blocking(move |store| {
                    record_group(store, &batches, clock::now(), &alerts, rate)
                })
                .await;
            let results: Vec<Result<BatchOutcome, GroupFailure>> = match written {
                Ok(Ok(outcomes)) => outcomes.into_iter().map(Ok).collect(),
                Ok(Err(error)) => vec![Err(failure(&error)); waiters.len()],
                Err(error) => {
                    let failed = GroupFailure::Failed(format!("usage writer: {error}"));
                    vec![Err(failed); waiters.len()]
                }
            };
            for (waiter, result) in waiters.into_iter().zip(results) {
                // A proxy that gave up waiting retries with the same batch id.
                let _ = waiter.send(result);
            }
        }
    }

    /// Drops the queued batches proxy `id` posted (it was revoked): none of them is counted.
    pub fn drop_proxy(&self, id: &str) {
        let dropped: Vec<(UsageBatch, Waiter)> = {
            let mut pending = self.lock();
            let (dropped, kept) = std::mem::take(&mut pending.batches)
                .into_iter()
                .partition(|(batch, _)| batch.reporter.as_deref() == Some(id));
            pending.batches = kept;
            dropped
        };
        for (_, waiter) in dropped {
            let _ = waiter.send(Err(GroupFailure::Revoked));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // The guarded state stays consistent through a panic elsewhere: take it as it is.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn failure(error: &Error) -> GroupFailure {
    if error.is_unavailable() {
        GroupFailure::Unavailable(error.to_string())
    } else {
        GroupFailure::Failed(format!("database: {error}"))
    }
}

#[cfg(test)]
mod tests;
