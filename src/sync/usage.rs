//! Usage reporting: each worker tallies requests per key per hour (`tally.rs`), hands its tally
//! to a shared queue every tick (`queue.rs`), and one worker per Envoy (the holder of the usage
//! lease) posts what is in the queue to the control service: one call per report interval per
//! Envoy. This file is that poster, the `Reporter`.
//!
//! A batch that fails to post goes back into the queue with its `batch_id`, so a retry after a
//! lost response cannot be counted twice by the control service, and is retried up to
//! `MAX_ATTEMPTS` times before it is dropped (logged and counted).
//!
//! Longer than most files because the reporter's retry and backlog tests sit beside it (about 350
//! lines of code).

use std::time::Duration;

use crate::host::Host;
use crate::sync::batch::{merge, UsageBatch};
use crate::sync::lease;
use crate::sync::queue::Queue;
use crate::sync::tally::Tally;
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
const LEASE_MARGIN_MS: u64 = 2_000;

/// A POST to make to the control service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCall {
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// What happened to a report, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    Ignored,
    Posted {
        reports: usize,
    },
    /// Failed; the batch was queued again for a later retry.
    Requeued {
        reason: String,
    },
    /// Failed too often; the batch was dropped.
    Dropped {
        reason: String,
        reports: usize,
    },
}

#[derive(Debug)]
struct InFlight {
    token: u32,
    deadline_ms: u64,
    batch: UsageBatch,
}

/// Per-VM reporting driver.
#[derive(Debug)]
pub struct Reporter {
    me: u64,
    interval: Duration,
    timeout: Duration,
    next_batch: u64,
    in_flight: Option<InFlight>,
    /// Reports left in the queue after the last batch was cut: post again at once.
    backlog: bool,
    /// Reports dropped because the backlog was over its bound, not yet reported.
    overflow: usize,
}

impl Reporter {
    pub fn new(me: u64, interval: Duration, timeout: Duration) -> Reporter {
        Reporter {
            me,
            interval,
            timeout,
            next_batch: 0,
            in_flight: None,
            backlog: false,
            overflow: 0,
        }
    }

    fn fail(&mut self, host: &dyn Host, queue: &dyn Queue, reason: String) -> ReportOutcome {
        let now = host.now_ms();
        lease::release(host, LEASE_KEY, self.me, now, None);
        let Some(in_flight) = self.in_flight.take() else {
            return ReportOutcome::Ignored;
        };
        let mut batch = in_flight.batch;
        batch.attempts += 1;
        if batch.attempts >= MAX_ATTEMPTS {
            return ReportOutcome::Dropped {
                reason,
                reports: batch.reports.len(),
            };
        }
        let encoded = serde_json::to_vec(&batch).unwrap_or_default();
        if queue.enqueue(&encoded) {
            ReportOutcome::Requeued { reason }
        } else {
            ReportOutcome::Dropped {
                reason,
                reports: batch.reports.len(),
            }
        }
    }

    /// Called on every tick: hands this worker's tally to the queue, and when this worker wins
    /// the lease and a report is due, takes the next batch from the queue to post.
    pub fn poll(
        &mut self,
        host: &dyn Host,
        queue: &dyn Queue,
        tally: &mut Tally,
    ) -> (Option<UsageCall>, Option<ReportOutcome>) {
        if let Some(batch) = tally.take_batch() {
            queue.enqueue(&serde_json::to_vec(&batch).unwrap_or_default());
        }
        let now = host.now_ms();
        if let Some(in_flight) = &self.in_flight {
            if now < in_flight.deadline_ms {
                return (None, None);
            }
            let outcome = self.fail(host, queue, "usage post timed out".into());
            return (None, Some(outcome));
        }
        let deadline_ms = now + self.timeout.as_millis() as u64 + 1_000;
        if lease::try_claim(host, LEASE_KEY, self.me, now, deadline_ms + LEASE_MARGIN_MS).is_none()
        {
            return (None, None);
        }
        let Some(batch) = self.next_batch(queue) else {
            lease::release(
                host,
                LEASE_KEY,
                self.me,
                now,
                Some(now + self.interval.as_millis() as u64),
            );
            return (None, None);
        };
        let Some(batch_id) = batch.batch_id.as_deref() else {
            return (None, None);
        };
        let body = serde_json::to_vec(&UsagePost {
            proxy_id: format!("{:016x}", self.me),
            batch_id: batch_id.to_string(),
            reports: batch.reports.clone(),
        })
        .unwrap_or_default();
        self.in_flight = Some(InFlight {
            token: 0,
            deadline_ms,
            batch,
        });
        let overflow = (self.overflow > 0).then(|| ReportOutcome::Dropped {
            reason: "usage backlog over its bound".into(),
            reports: std::mem::take(&mut self.overflow),
        });
        (
            Some(UsageCall {
                body,
                timeout: self.timeout,
            }),
            overflow,
        )
    }

    /// Picks what to post: the first batch being retried as it is (same id), or else every
    /// fresh tally merged under a new id. Everything else goes back into the queue, within the
    /// backlog bound: batches being retried keep their place, and fresh reports beyond what
    /// the bound leaves are dropped and counted (whichever path is taken), so a control service
    /// slower than the traffic cannot grow Envoy's memory without end.
    fn next_batch(&mut self, queue: &dyn Queue) -> Option<UsageBatch> {
        let mut retry: Option<UsageBatch> = None;
        let mut waiting_retries: Vec<UsageBatch> = Vec::new();
        let mut fresh = Vec::new();
        for _ in 0..MAX_ITEMS_PER_REPORT {
            let Some(item) = queue.dequeue() else { break };
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
            queue.enqueue(&serde_json::to_vec(&batch).unwrap_or_default());
        }
        chosen
    }

    pub fn dispatched(&mut self, token: u32) {
        if let Some(in_flight) = &mut self.in_flight {
            in_flight.token = token;
        }
    }

    pub fn dispatch_failed(
        &mut self,
        host: &dyn Host,
        queue: &dyn Queue,
        reason: String,
    ) -> ReportOutcome {
        self.fail(host, queue, reason)
    }

    pub fn awaits(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.token == token)
    }

    /// The control service answered call `token` with `status` (`None`: no response).
    pub fn on_response(
        &mut self,
        host: &dyn Host,
        queue: &dyn Queue,
        token: u32,
        status: Option<u32>,
    ) -> ReportOutcome {
        if !self.awaits(token) {
            return ReportOutcome::Ignored;
        }
        match status {
            Some(200..=299) => {
                let now = host.now_ms();
                let next_due = if self.backlog {
                    now
                } else {
                    now + self.interval.as_millis() as u64
                };
                lease::release(host, LEASE_KEY, self.me, now, Some(next_due));
                let reports = self.in_flight.take().map_or(0, |f| f.batch.reports.len());
                ReportOutcome::Posted { reports }
            }
            // The control service understood and refused it: retrying will not help.
            Some(status @ 400..=499) if status != 408 && status != 429 => {
                let now = host.now_ms();
                lease::release(
                    host,
                    LEASE_KEY,
                    self.me,
                    now,
                    Some(now + self.interval.as_millis() as u64),
                );
                let reports = self.in_flight.take().map_or(0, |f| f.batch.reports.len());
                ReportOutcome::Dropped {
                    reason: format!("control service refused the usage batch (HTTP {status})"),
                    reports,
                }
            }
            Some(status) => self.fail(
                host,
                queue,
                format!("control service answered HTTP {status}"),
            ),
            None => self.fail(host, queue, "usage post failed (no response)".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;
    use crate::policy::decision::DenyCode;
    use crate::sync::queue::FakeQueue;
    use crate::sync::tally::Tally;

    fn body_of(call: &UsageCall) -> serde_json::Value {
        serde_json::from_slice(&call.body).unwrap()
    }

    #[test]
    fn tallies_from_several_workers_become_one_post() {
        let host = FakeHost::at(1_795_467_634_000);
        let queue = FakeQueue::default();
        let now = 1_795_467_634;
        let (mut worker_a, mut worker_b) = (Tally::default(), Tally::default());
        worker_a.record("key_1", now, None);
        worker_a.record("key_1", now, Some(DenyCode::RateLimitExceeded));
        worker_b.record("key_1", now, None);
        worker_b.record("key_2", now - 3600, None);
        let mut reporter_a = Reporter::new(1, Duration::from_secs(5), Duration::from_secs(2));
        let mut reporter_b = Reporter::new(2, Duration::from_secs(5), Duration::from_secs(2));
        // B only hands over its tally: A holds the lease once A has posted.
        let (call, _) = reporter_a.poll(&host, &queue, &mut worker_a);
        assert!(call.is_some());
        reporter_a.dispatched(1);
        let (none, _) = reporter_b.poll(&host, &queue, &mut worker_b);
        assert!(none.is_none());
        assert_eq!(
            reporter_a.on_response(&host, &queue, 1, Some(200)),
            ReportOutcome::Posted { reports: 1 }
        );
        host.now.set(host.now.get() + 5_000);
        let (call, _) = reporter_b.poll(&host, &queue, &mut Tally::default());
        let body = body_of(&call.unwrap());
        assert_eq!(body["proxy_id"], "0000000000000002");
        let reports = body["reports"].as_array().unwrap();
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0]["key_id"], "key_1");
        assert_eq!(reports[0]["allowed"], 1);
        assert_eq!(reports[1]["hour"], "2026-11-23T20:00:00Z");
    }

    #[test]
    fn failed_posts_are_retried_with_the_same_batch_id_then_dropped() {
        let host = FakeHost::at(1_000_000);
        let queue = FakeQueue::default();
        let mut tally = Tally::default();
        tally.record("key_1", 1_000, None);
        let mut reporter = Reporter::new(9, Duration::from_secs(5), Duration::from_secs(2));
        let (call, _) = reporter.poll(&host, &queue, &mut tally);
        let batch_id = body_of(&call.unwrap())["batch_id"].clone();
        reporter.dispatched(1);
        assert!(matches!(
            reporter.on_response(&host, &queue, 1, Some(503)),
            ReportOutcome::Requeued { .. }
        ));
        // New usage arrives meanwhile; the retry goes first, alone, with its id.
        tally.record("key_2", 1_000, None);
        let mut seen_ids = vec![];
        for attempt in 1..MAX_ATTEMPTS {
            host.now.set(host.now.get() + 60_000);
            let (call, _) = reporter.poll(&host, &queue, &mut tally);
            let body = body_of(&call.expect("a retry"));
            seen_ids.push(body["batch_id"].clone());
            assert_eq!(body["reports"].as_array().unwrap().len(), 1);
            reporter.dispatched(attempt + 1);
            let outcome = reporter.on_response(&host, &queue, attempt + 1, None);
            if attempt + 1 == MAX_ATTEMPTS {
                assert!(
                    matches!(outcome, ReportOutcome::Dropped { .. }),
                    "{outcome:?}"
                );
            }
        }
        assert!(seen_ids.iter().all(|id| *id == batch_id));
        // The fresh usage of key_2 is still queued and goes next.
        host.now.set(host.now.get() + 60_000);
        let (call, _) = reporter.poll(&host, &queue, &mut tally);
        let body = body_of(&call.unwrap());
        assert_ne!(body["batch_id"], batch_id);
        assert_eq!(body["reports"][0]["key_id"], "key_2");
    }

    #[test]
    fn many_keys_are_posted_in_bounded_batches() {
        let host = FakeHost::at(1_000_000);
        let queue = FakeQueue::default();
        let mut tally = Tally::default();
        for i in 0..(MAX_REPORTS_PER_POST + 10) {
            tally.record(&format!("key_{i}"), 1_000, None);
        }
        let mut reporter = Reporter::new(9, Duration::from_secs(5), Duration::from_secs(2));
        let (call, _) = reporter.poll(&host, &queue, &mut tally);
        assert_eq!(
            body_of(&call.unwrap())["reports"].as_array().unwrap().len(),
            MAX_REPORTS_PER_POST
        );
        reporter.dispatched(1);
        assert!(matches!(
            reporter.on_response(&host, &queue, 1, Some(200)),
            ReportOutcome::Posted { .. }
        ));
        host.now.set(host.now.get() + 5_000);
        let (call, _) = reporter.poll(&host, &queue, &mut tally);
        assert_eq!(
            body_of(&call.unwrap())["reports"].as_array().unwrap().len(),
            10
        );
    }

    #[test]
    fn the_backlog_is_bounded() {
        let host = FakeHost::at(1_000_000);
        let queue = FakeQueue::default();
        let mut tally = Tally::default();
        for i in 0..(MAX_BACKLOG_REPORTS + 7) {
            tally.record(&format!("key_{i}"), 1_000, None);
        }
        let mut reporter = Reporter::new(9, Duration::from_secs(5), Duration::from_secs(2));
        let (call, outcome) = reporter.poll(&host, &queue, &mut tally);
        assert!(call.is_some());
        assert_eq!(
            outcome,
            Some(ReportOutcome::Dropped {
                reason: "usage backlog over its bound".into(),
                reports: 7
            })
        );
        let queued: usize = queue
            .0
            .borrow()
            .iter()
            .map(|item| {
                serde_json::from_slice::<UsageBatch>(item)
                    .unwrap()
                    .reports
                    .len()
            })
            .sum();
        assert_eq!(queued, MAX_BACKLOG_REPORTS - MAX_REPORTS_PER_POST);
    }

    fn queued_reports(queue: &FakeQueue) -> usize {
        queue
            .0
            .borrow()
            .iter()
            .map(|item| {
                serde_json::from_slice::<UsageBatch>(item)
                    .unwrap()
                    .reports
                    .len()
            })
            .sum()
    }

    #[test]
    fn the_backlog_stays_bounded_while_a_retry_is_pending() {
        let host = FakeHost::at(1_000_000);
        let queue = FakeQueue::default();
        let mut tally = Tally::default();
        tally.record("key_retried", 1_000, None);
        let mut reporter = Reporter::new(9, Duration::from_secs(5), Duration::from_secs(2));
        assert!(reporter.poll(&host, &queue, &mut tally).0.is_some());
        reporter.dispatched(1);
        assert!(matches!(
            reporter.on_response(&host, &queue, 1, Some(503)),
            ReportOutcome::Requeued { .. }
        ));
        let mut dropped = 0;
        for round in 0..3u32 {
            for i in 0..(MAX_BACKLOG_REPORTS / 2 + 3) {
                tally.record(&format!("key_{round}_{i}"), 1_000, None);
            }
            host.now.set(host.now.get() + 60_000);
            let (call, outcome) = reporter.poll(&host, &queue, &mut tally);
            let body = body_of(&call.expect("the retry"));
            assert_eq!(body["reports"][0]["key_id"], "key_retried");
            if let Some(ReportOutcome::Dropped { reports, .. }) = outcome {
                dropped += reports;
            }
            // The batch in flight plus everything queued never passes the bound.
            assert!(
                queued_reports(&queue) < MAX_BACKLOG_REPORTS,
                "round {round}: {}",
                queued_reports(&queue)
            );
            reporter.dispatched(round + 2);
            reporter.on_response(&host, &queue, round + 2, Some(503));
        }
        let offered = 3 * (MAX_BACKLOG_REPORTS / 2 + 3);
        assert_eq!(queued_reports(&queue) - 1 + dropped, offered);
    }

    #[test]
    fn a_stalled_post_is_abandoned_and_requeued() {
        let host = FakeHost::at(1_000_000);
        let queue = FakeQueue::default();
        let mut tally = Tally::default();
        tally.record("key_1", 1_000, None);
        let mut reporter = Reporter::new(9, Duration::from_secs(5), Duration::from_secs(2));
        assert!(reporter.poll(&host, &queue, &mut tally).0.is_some());
        reporter.dispatched(4);
        host.now.set(host.now.get() + 3_001);
        let (_, outcome) = reporter.poll(&host, &queue, &mut tally);
        assert!(matches!(outcome, Some(ReportOutcome::Requeued { .. })));
        assert_eq!(
            reporter.on_response(&host, &queue, 4, Some(200)),
            ReportOutcome::Ignored
        );
        assert_eq!(queue.0.borrow().len(), 1);
    }
}
