//! Usage reporting: each worker tallies requests per key per hour (`tally.rs`), hands its tally
//! to a shared queue every tick (`queue.rs`), and one worker per Envoy (the holder of the usage
//! lease) posts what is in the queue to the control service: one call per report interval per
//! Envoy. This module is that poster, the `Usage` job (`sync/task.rs` runs it).
//!
//! A batch that fails to post goes back into the queue with its `batch_id`, so a retry after a
//! lost response cannot be counted twice by the control service, and is retried up to
//! `MAX_ATTEMPTS` times before it is dropped (logged and counted). The retry and backlog tests
//! are in `tests.rs`.

use std::fmt;
use std::time::Duration;

use crate::config::{ControlConfig, UsageConfig};
use crate::host::Host;
use crate::policy::routes::RouteTable;
use crate::sync::batch::{merge, UsageBatch};
use crate::sync::queue::Queue;
use crate::sync::tally::Tally;
use crate::sync::task::{Call, CallError, Job, JobLease, Response, Start, Step};
use keygate_contract::usage::UsagePost;

pub const QUEUE_NAME: &str = "keygate.usage";
const LEASE_KEY: &str = "keygate.usage.lease";
/// Posts of one batch before it is given up.
pub const MAX_ATTEMPTS: u32 = 10;
/// Reports in one post (the control service accepts up to 10,000).
pub const MAX_REPORTS_PER_POST: usize = 5_000;
/// Reports waiting in the queue at most; more are dropped (and counted).
pub const MAX_BACKLOG_REPORTS: usize = 100_000;
/// Queue items handled per report, so one report stays bounded.
const MAX_ITEMS_PER_REPORT: usize = 4096;

/// Why usage was not posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// The post was not made, or not answered in time.
    Call(CallError),
    /// The post ended without a response.
    NoResponse,
    /// A status worth retrying (5xx, 408, 429, ...).
    Status(u32),
    /// The control service understood the batch and refused it: retrying will not help.
    Refused(u32),
    /// More reports waited than the backlog holds.
    Backlog,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Call(CallError::TimedOut) => f.write_str("usage post timed out"),
            UsageError::Call(error) => write!(f, "{error}"),
            UsageError::NoResponse => f.write_str("usage post failed (no response)"),
            UsageError::Status(status) => write!(f, "control service answered HTTP {status}"),
            UsageError::Refused(status) => {
                write!(f, "control service refused the usage batch (HTTP {status})")
            }
            UsageError::Backlog => f.write_str("usage backlog over its bound"),
        }
    }
}

impl std::error::Error for UsageError {}

/// What happened to a report, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    Posted {
        reports: usize,
    },
    /// Failed; the batch was queued again for a later retry.
    Requeued {
        reason: UsageError,
    },
    /// Failed too often, refused, or over the backlog's bound; the reports were dropped.
    Dropped {
        reason: UsageError,
        reports: usize,
    },
}

/// The usage poster of one VM.
pub struct Usage {
    me: u64,
    control: ControlConfig,
    path: String,
    interval: Duration,
    queue: Box<dyn Queue>,
    next_batch: u64,
    /// Reports left in the queue after the last batch was cut: post again at once.
    backlog: bool,
    /// Reports dropped because the backlog was over its bound, not yet reported.
    overflow: usize,
}

impl Usage {
    pub fn new(
        me: u64,
        control: &ControlConfig,
        usage: &UsageConfig,
        queue: Box<dyn Queue>,
    ) -> Usage {
        Usage {
            me,
            control: control.clone(),
            path: usage.path.clone(),
            interval: usage.report_interval,
            queue,
            next_batch: 0,
            backlog: false,
            overflow: 0,
        }
    }

    /// Hands a worker's tally to the queue: every worker, every tick (`routes` names its
    /// routes).
    pub fn hand_over(&self, tally: &mut Tally, routes: &RouteTable) {
        self.hand_over_batch(tally.take_batch(routes));
    }

    /// Queues a batch taken from a worker's tally. Apart from `hand_over` so that a tally
    /// behind a lock is held only while the batch is taken, not while it is encoded.
    pub fn hand_over_batch(&self, batch: Option<UsageBatch>) {
        if let Some(batch) = batch {
            self.queue
                .enqueue(&serde_json::to_vec(&batch).unwrap_or_default());
        }
    }

    fn interval_ms(&self) -> u64 {
        self.interval.as_millis() as u64
    }

    /// A failed post: the batch goes back into the queue, or is dropped after its last attempt.
    fn retry_later(&self, mut batch: UsageBatch, reason: UsageError) -> ReportOutcome {
        batch.attempts += 1;
        if batch.attempts >= MAX_ATTEMPTS {
            return ReportOutcome::Dropped {
                reason,
                reports: batch.reports.len(),
            };
        }
        let encoded = serde_json::to_vec(&batch).unwrap_or_default();
        if self.queue.enqueue(&encoded) {
            ReportOutcome::Requeued { reason }
        } else {
            ReportOutcome::Dropped {
                reason,
                reports: batch.reports.len(),
            }
        }
    }

    /// Picks what to post: the first batch being retried as it is (same id), or else every
    /// fresh tally merged under a new id. Everything else goes back into the queue, within the
    /// backlog bound: batches being retried keep their place, and fresh reports beyond what
    /// the bound leaves are dropped and counted (whichever path is taken), so a control service
    /// slower than the traffic cannot grow Envoy's memory without end.
    fn next_batch(&mut self) -> Option<UsageBatch> {
        let mut retry: Option<UsageBatch> = None;
        let mut waiting_retries: Vec<UsageBatch> = Vec::new();
        let mut fresh = Vec::new();
        for _ in 0..MAX_ITEMS_PER_REPORT {
            let Some(item) = self.queue.dequeue() else {
                break;
            };
            let Ok(batch) = serde_json::from_slice::<UsageBatch>(&item) else {
                continue;
            };
            match (&retry, batch.batch_id.is_some()) {
                (None, true) => retry = Some(batch),
                (Some(_), true) => waiting_retries.push(batch),
                (_, false) => fresh.extend(batch.reports),
            }
        }
        let retried_reports: usize = retry
            .iter()
            .chain(&waiting_retries)
            .map(|batch| batch.reports.len())
            .sum();
        let mut fresh = merge(fresh);
        let room = MAX_BACKLOG_REPORTS.saturating_sub(retried_reports);
        if fresh.len() > room {
            self.overflow += fresh.len() - room;
            fresh.truncate(room);
        }
        let mut keep = waiting_retries;
        let chosen = match retry {
            Some(batch) => {
                if !fresh.is_empty() {
                    keep.push(UsageBatch {
                        batch_id: None,
                        attempts: 0,
                        reports: fresh,
                    });
                }
                Some(batch)
            }
            None if !fresh.is_empty() => {
                let mut reports = fresh;
                // The control service takes at most 10,000 reports a post; what does not fit
                // goes back to the queue and is posted right after this batch.
                self.backlog = reports.len() > MAX_REPORTS_PER_POST;
                if self.backlog {
                    let rest = reports.split_off(MAX_REPORTS_PER_POST);
                    keep.push(UsageBatch {
                        batch_id: None,
                        attempts: 0,
                        reports: rest,
                    });
                }
                self.next_batch += 1;
                Some(UsageBatch {
                    batch_id: Some(format!("{:016x}-{}", self.me, self.next_batch)),
                    attempts: 0,
                    reports,
                })
            }
            None => None,
        };
        for batch in keep {
            self.queue
                .enqueue(&serde_json::to_vec(&batch).unwrap_or_default());
        }
        chosen
    }
}

impl Job for Usage {
    type Outcome = ReportOutcome;
    /// The batch being posted.
    type Pending = UsageBatch;
    const LEASE: JobLease = JobLease {
        key: LEASE_KEY,
        sticky: false,
    };

    fn call_timeout(&mut self, _host: &dyn Host) -> Duration {
        self.control.timeout
    }

    /// Takes the next batch from the queue to post.
    fn start(&mut self, host: &dyn Host, _fence: u64) -> Start<UsageBatch, ReportOutcome> {
        let idle = Start::Idle {
            next_due_ms: host.now_ms() + self.interval_ms(),
        };
        let Some(batch) = self.next_batch() else {
            return idle;
        };
        let Some(batch_id) = batch.batch_id.clone() else {
            return idle;
        };
        let body = serde_json::to_vec(&UsagePost {
            proxy_id: format!("{:016x}", self.me),
            batch_id,
            reports: batch.reports.clone(),
        })
        .unwrap_or_default();
        let overflow = (self.overflow > 0).then(|| ReportOutcome::Dropped {
            reason: UsageError::Backlog,
            reports: std::mem::take(&mut self.overflow),
        });
        Start::Call {
            call: Call::post_json(&self.control, &self.path, body),
            pending: batch,
            report: overflow,
        }
    }

    fn on_response(
        &mut self,
        host: &dyn Host,
        batch: UsageBatch,
        response: Response<'_>,
    ) -> Step<UsageBatch, ReportOutcome> {
        let now = host.now_ms();
        let reports = batch.reports.len();
        let (outcome, next_due_ms) = match response.status {
            Some(200..=299) => {
                let next_due = if self.backlog {
                    now
                } else {
                    now + self.interval_ms()
                };
                (ReportOutcome::Posted { reports }, Some(next_due))
            }
            // A body the service refuses (400, 413, 422) would be refused again: dropped. A
            // refused credential (401, 403: a token being rotated, a proxy not yet allowed) and
            // 408/429 are the service's state, not the batch's: retried like a 5xx, up to
            // MAX_ATTEMPTS. Entries the service finds implausible come back in a 200's
            // `refused`, never as a refusal of the batch.
            Some(status @ 400..=499) if !matches!(status, 401 | 403 | 408 | 429) => {
                let reason = UsageError::Refused(status);
                let dropped = ReportOutcome::Dropped { reason, reports };
                (dropped, Some(now + self.interval_ms()))
            }
            Some(status) => (self.retry_later(batch, UsageError::Status(status)), None),
            None => (self.retry_later(batch, UsageError::NoResponse), None),
        };
        Step::Done {
            outcome,
            next_due_ms,
        }
    }

    fn on_failure(
        &mut self,
        _host: &dyn Host,
        batch: UsageBatch,
        error: CallError,
    ) -> ReportOutcome {
        self.retry_later(batch, UsageError::Call(error))
    }
}

#[cfg(test)]
mod tests;
