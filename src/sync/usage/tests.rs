//! The usage poster through its runner and `FakeHost`: tallies of several workers in one post,
//! retries under the same batch id, bounded posts and backlog, a stalled post requeued.

use std::rc::Rc;

use super::*;
use crate::config::Config;
use crate::host::{DispatchedCall, FakeHost};
use crate::policy::decision::DenyCode;
use crate::policy::routes::RouteTable;
use crate::sync::queue::LocalQueue;
use crate::sync::task::Runner;

type Reporter = Runner<Usage>;

/// Reports every 5 s, posts time out after 2 s, through `queue` (shared by the workers).
fn reporter(me: u64, queue: &Rc<LocalQueue>) -> Reporter {
    let json = r#"{"control":{"cluster":"kc","token":"t","timeout":"2s"},"usage":{"report_interval":"5s"}}"#;
    let config = Config::parse(json.as_bytes(), &|_| None).unwrap();
    let usage = Usage::new(
        me,
        &config.control,
        &config.usage,
        Box::new(Rc::clone(queue)),
    );
    Runner::new(usage, me, "kc").presenting(&config.control)
}

/// Hands `tally` over and ticks: the post that went out, if any, and the first outcome.
fn poll(
    reporter: &mut Reporter,
    host: &FakeHost,
    tally: &mut Tally,
) -> (Option<DispatchedCall>, Option<ReportOutcome>) {
    reporter.job().hand_over(tally, &RouteTable::default());
    let outcomes = reporter.tick(host);
    (host.take_calls().pop(), outcomes.into_iter().next())
}

/// Answers call `token` with `status`: the outcome, if the reporter waited for it.
fn answer(
    reporter: &mut Reporter,
    host: &FakeHost,
    token: u32,
    status: Option<u32>,
) -> Option<ReportOutcome> {
    let size = host.respond(status, b"");
    reporter.on_response(host, token, size).into_iter().next()
}

fn body_of(call: &DispatchedCall) -> serde_json::Value {
    serde_json::from_slice(call.body.as_deref().unwrap()).unwrap()
}

fn queued_reports(queue: &LocalQueue) -> usize {
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
fn tallies_from_several_workers_become_one_post() {
    let host = FakeHost::at(1_795_467_634_000);
    let queue = Rc::new(LocalQueue::default());
    let now = 1_795_467_634;
    let (mut worker_a, mut worker_b) = (Tally::default(), Tally::default());
    worker_a.record("key_1", now, None, None);
    worker_a.record("key_1", now, None, Some(DenyCode::RateLimitExceeded));
    worker_b.record("key_1", now, None, None);
    worker_b.record("key_2", now - 3600, None, None);
    let mut reporter_a = reporter(1, &queue);
    let mut reporter_b = reporter(2, &queue);
    // B only hands over its tally: A holds the lease once A has posted.
    let (call, _) = poll(&mut reporter_a, &host, &mut worker_a);
    let call = call.expect("A posts");
    assert_eq!(
        (
            call.path(),
            call.header(":method"),
            call.header("authorization")
        ),
        ("/v1/usage", Some("POST"), Some("Bearer t"))
    );
    let (none, _) = poll(&mut reporter_b, &host, &mut worker_b);
    assert!(none.is_none());
    assert_eq!(
        answer(&mut reporter_a, &host, call.token, Some(200)),
        Some(ReportOutcome::Posted { reports: 1 })
    );
    host.now.set(host.now.get() + 5_000);
    let (call, _) = poll(&mut reporter_b, &host, &mut Tally::default());
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
    let queue = Rc::new(LocalQueue::default());
    let mut tally = Tally::default();
    tally.record("key_1", 1_000, None, None);
    let mut reporter = reporter(9, &queue);
    let call = poll(&mut reporter, &host, &mut tally).0.unwrap();
    let batch_id = body_of(&call)["batch_id"].clone();
    assert_eq!(
        answer(&mut reporter, &host, call.token, Some(503)),
        Some(ReportOutcome::Requeued {
            reason: UsageError::Status(503)
        })
    );
    // New usage arrives meanwhile; the retry goes first, alone, with its id.
    tally.record("key_2", 1_000, None, None);
    let mut seen_ids = vec![];
    for attempt in 1..MAX_ATTEMPTS {
        host.now.set(host.now.get() + 60_000);
        let call = poll(&mut reporter, &host, &mut tally).0.expect("a retry");
        let body = body_of(&call);
        seen_ids.push(body["batch_id"].clone());
        assert_eq!(body["reports"].as_array().unwrap().len(), 1);
        let outcome = answer(&mut reporter, &host, call.token, None);
        if attempt + 1 == MAX_ATTEMPTS {
            assert_eq!(
                outcome,
                Some(ReportOutcome::Dropped {
                    reason: UsageError::NoResponse,
                    reports: 1
                })
            );
        }
    }
    assert!(seen_ids.iter().all(|id| *id == batch_id));
    // The fresh usage of key_2 is still queued and goes next.
    host.now.set(host.now.get() + 60_000);
    let body = body_of(&poll(&mut reporter, &host, &mut tally).0.unwrap());
    assert_ne!(body["batch_id"], batch_id);
    assert_eq!(body["reports"][0]["key_id"], "key_2");
}

#[test]
fn what_an_answer_does_to_the_batch() {
    // (status, outcome, batches queued after)
    let cases = [
        (Some(204), ReportOutcome::Posted { reports: 1 }, 0),
        (
            Some(400),
            ReportOutcome::Dropped {
                reason: UsageError::Refused(400),
                reports: 1,
            },
            0,
        ),
        (
            Some(429),
            ReportOutcome::Requeued {
                reason: UsageError::Status(429),
            },
            1,
        ),
        (
            Some(408),
            ReportOutcome::Requeued {
                reason: UsageError::Status(408),
            },
            1,
        ),
        (
            Some(401),
            ReportOutcome::Requeued {
                reason: UsageError::Status(401),
            },
            1,
        ),
        (
            Some(403),
            ReportOutcome::Requeued {
                reason: UsageError::Status(403),
            },
            1,
        ),
        (
            Some(413),
            ReportOutcome::Dropped {
                reason: UsageError::Refused(413),
                reports: 1,
            },
            0,
        ),
        (
            None,
            ReportOutcome::Requeued {
                reason: UsageError::NoResponse,
            },
            1,
        ),
    ];
    for (status, outcome, queued) in cases {
        let host = FakeHost::at(1_000_000);
        let queue = Rc::new(LocalQueue::default());
        let mut tally = Tally::default();
        tally.record("key_1", 1_000, None, None);
        let mut reporter = reporter(9, &queue);
        let call = poll(&mut reporter, &host, &mut tally).0.unwrap();
        assert_eq!(
            answer(&mut reporter, &host, call.token, status),
            Some(outcome),
            "{status:?}"
        );
        assert_eq!(queue.0.borrow().len(), queued, "{status:?}");
    }
}

#[test]
fn many_keys_are_posted_in_bounded_batches() {
    let host = FakeHost::at(1_000_000);
    let queue = Rc::new(LocalQueue::default());
    let mut tally = Tally::default();
    for i in 0..(MAX_REPORTS_PER_POST + 10) {
        tally.record(&format!("key_{i}"), 1_000, None, None);
    }
    let mut reporter = reporter(9, &queue);
    let call = poll(&mut reporter, &host, &mut tally).0.unwrap();
    assert_eq!(
        body_of(&call)["reports"].as_array().unwrap().len(),
        MAX_REPORTS_PER_POST
    );
    assert!(matches!(
        answer(&mut reporter, &host, call.token, Some(200)),
        Some(ReportOutcome::Posted { .. })
    ));
    // The rest is due at once.
    let call = poll(&mut reporter, &host, &mut tally).0.unwrap();
    assert_eq!(body_of(&call)["reports"].as_array().unwrap().len(), 10);
}

#[test]
fn the_backlog_is_bounded() {
    let host = FakeHost::at(1_000_000);
    let queue = Rc::new(LocalQueue::default());
    let mut tally = Tally::default();
    for i in 0..(MAX_BACKLOG_REPORTS + 7) {
        tally.record(&format!("key_{i}"), 1_000, None, None);
    }
    let mut reporter = reporter(9, &queue);
    let (call, outcome) = poll(&mut reporter, &host, &mut tally);
    assert!(call.is_some());
    assert_eq!(
        outcome,
        Some(ReportOutcome::Dropped {
            reason: UsageError::Backlog,
            reports: 7
        })
    );
    assert_eq!(
        queued_reports(&queue),
        MAX_BACKLOG_REPORTS - MAX_REPORTS_PER_POST
    );
}

#[test]
fn the_backlog_stays_bounded_while_a_retry_is_pending() {
    let host = FakeHost::at(1_000_000);
    let queue = Rc::new(LocalQueue::default());
    let mut tally = Tally::default();
    tally.record("key_retried", 1_000, None, None);
    let mut reporter = reporter(9, &queue);
    let call = poll(&mut reporter, &host, &mut tally).0.unwrap();
    assert!(matches!(
        answer(&mut reporter, &host, call.token, Some(503)),
        Some(ReportOutcome::Requeued { .. })
    ));
    let mut dropped = 0;
    for round in 0..3u32 {
        for i in 0..(MAX_BACKLOG_REPORTS / 2 + 3) {
            tally.record(&format!("key_{round}_{i}"), 1_000, None, None);
        }
        host.now.set(host.now.get() + 60_000);
        let (call, outcome) = poll(&mut reporter, &host, &mut tally);
        let call = call.expect("the retry");
        assert_eq!(body_of(&call)["reports"][0]["key_id"], "key_retried");
        if let Some(ReportOutcome::Dropped { reports, .. }) = outcome {
            dropped += reports;
        }
        // The batch in flight plus everything queued never passes the bound.
        assert!(
            queued_reports(&queue) < MAX_BACKLOG_REPORTS,
            "round {round}: {}",
            queued_reports(&queue)
        );
        answer(&mut reporter, &host, call.token, Some(503));
    }
    let offered = 3 * (MAX_BACKLOG_REPORTS / 2 + 3);
    assert_eq!(queued_reports(&queue) - 1 + dropped, offered);
}

#[test]
fn a_stalled_post_is_abandoned_and_requeued() {
    let host = FakeHost::at(1_000_000);
    let queue = Rc::new(LocalQueue::default());
    let mut tally = Tally::default();
    tally.record("key_1", 1_000, None, None);
    let mut reporter = reporter(9, &queue);
    let call = poll(&mut reporter, &host, &mut tally).0.unwrap();
    host.now.set(host.now.get() + 3_001);
    let (_, outcome) = poll(&mut reporter, &host, &mut tally);
    assert_eq!(
        outcome,
        Some(ReportOutcome::Requeued {
            reason: UsageError::Call(CallError::TimedOut)
        })
    );
    assert_eq!(answer(&mut reporter, &host, call.token, Some(200)), None);
    assert_eq!(queue.0.borrow().len(), 1);
}
