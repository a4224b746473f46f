//! The runner's transitions, driven through `FakeHost` with a scripted job.

use std::collections::VecDeque;

use super::*;
use crate::host::FakeHost;
use crate::sync::lease::{backoff_ms, read, Lease};

const KEY: &str = "test.lease";
const NOW: u64 = 1_000_000;
const TIMEOUT: Duration = Duration::from_secs(2);
/// Where a claim at `NOW` puts the lease: timeout, slack, margin.
const CLAIMED_UNTIL: u64 = NOW + 2_000 + DEADLINE_SLACK_MS + LEASE_MARGIN_MS;

#[derive(Debug, Clone, Copy)]
enum Plan {
    Call,
    Idle(u64),
    Failed,
}

#[derive(Debug, Clone, Copy)]
enum Then {
    Done(Option<u64>),
    Next,
    Lost,
}

/// A job that does what its script says and writes down what it was asked.
#[derive(Default)]
struct Script {
    starts: VecDeque<Plan>,
    answers: VecDeque<Then>,
    eager: bool,
    max_body: usize,
    calls_made: u32,
    seen: Vec<String>,
}

impl Script {
    fn new(starts: &[Plan], answers: &[Then]) -> Script {
        Script {
            starts: starts.iter().copied().collect(),
            answers: answers.iter().copied().collect(),
            ..Script::default()
        }
    }

    fn call(&mut self) -> (Call, u32) {
        self.calls_made += 1;
        let call = Call {
            headers: vec![(":path".into(), format!("/call/{}", self.calls_made))],
            body: Some(b"body".to_vec()),
            timeout: TIMEOUT,
        };
        (call, self.calls_made)
    }
}

impl Job for Script {
    type Outcome = String;
    type Pending = u32;
    const LEASE: JobLease = JobLease {
        key: KEY,
        sticky: false,
    };

    fn chores(&mut self, _host: &dyn Host, busy: bool) {
        self.seen.push(format!("chores busy={busy}"));
    }

    fn call_timeout(&mut self, _host: &dyn Host) -> Duration {
        TIMEOUT
    }

    fn start(&mut self, _host: &dyn Host, fence: u64) -> Start<u32, String> {
        self.seen.push(format!("start fence={fence}"));
        match self.starts.pop_front().unwrap_or(Plan::Call) {
            Plan::Call => {
                let (call, pending) = self.call();
                Start::Call {
                    call,
                    pending,
                    report: Some(format!("started {pending}")),
                }
            }
            Plan::Idle(next_due_ms) => Start::Idle { next_due_ms },
            Plan::Failed => Start::Failed("start failed".into()),
        }
    }

    fn max_body_bytes(&self) -> usize {
        self.max_body
    }

    fn on_response(
        &mut self,
        _host: &dyn Host,
        pending: u32,
        response: Response<'_>,
    ) -> Step<u32, String> {
        self.seen.push(format!(
            "answer to {pending}: {:?} {:?} {}",
            response.status,
            response
                .body
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            response.body_size
        ));
        match self.answers.pop_front().unwrap_or(Then::Done(None)) {
            Then::Done(next_due_ms) => Step::Done {
                outcome: format!("done {pending}"),
                next_due_ms,
            },
            Then::Next => {
                let (call, next) = self.call();
                Step::Next {
                    call,
                    pending: next,
                    outcome: format!("next after {pending}"),
                }
            }
            Then::Lost => Step::Lost(format!("lost {pending}")),
        }
    }

    fn on_failure(&mut self, _host: &dyn Host, pending: u32, error: CallError) -> String {
        format!("{pending} failed: {error}")
    }

    fn eager(&self) -> bool {
        self.eager
    }
}

fn runner(script: Script) -> Runner<Script> {
    Runner::new(script, 7, "control")
}

fn lease(host: &FakeHost) -> Lease {
    read(host, KEY).0
}

/// Ticks once and answers the call it made with `status`.
fn answered(runner: &mut Runner<Script>, host: &FakeHost, status: Option<u32>) -> Vec<String> {
    runner.tick(host);
    let call = host.take_calls().pop().expect("a call");
    let size = host.respond(status, b"{}");
    runner.on_response(host, call.token, size)
}

#[test]
fn a_won_lease_starts_the_job_and_its_call_goes_out_with_a_deadline() {
    let host = FakeHost::at(NOW);
    let mut runner = runner(Script::default());
    assert_eq!(runner.tick(&host), vec!["started 1".to_string()]);
    let calls = host.take_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].cluster.as_str(), calls[0].path(), calls[0].timeout),
        ("control", "/call/1", TIMEOUT)
    );
    assert_eq!(calls[0].body.as_deref(), Some(&b"body"[..]));
    assert!(runner.is_busy() && runner.awaits(calls[0].token));
    assert_eq!(
        lease(&host),
        Lease {
            holder: 7,
            pending_until_ms: CLAIMED_UNTIL,
            next_due_ms: 0,
            failures: 0,
            fence: 1
        }
    );
    // Busy: later ticks do chores only, until the deadline.
    host.now.set(NOW + 2_000 + DEADLINE_SLACK_MS - 1);
    assert!(runner.tick(&host).is_empty());
    assert!(host.take_calls().is_empty());
    assert_eq!(
        runner.job().seen,
        ["chores busy=false", "start fence=1", "chores busy=true"]
    );
}

/// Plan, dispatch refused, outcomes; the lease after: next due, failures, still pending.
type StartCase = (Plan, bool, &'static [&'static str], u64, u32, bool);

#[test]
fn what_a_start_does_to_the_lease() {
    let cases: [StartCase; 4] = [
        (Plan::Call, false, &["started 1"], 0, 0, true),
        (Plan::Idle(NOW + 5_000), false, &[], NOW + 5_000, 0, false),
        (Plan::Failed, false, &["start failed"], NOW + backoff_ms(0), 1, false),
        (
            Plan::Call,
            true,
            &[
                "started 1",
                "1 failed: could not call cluster \"control\" (BadArgument); is it defined in the Envoy config?",
            ],
            NOW + backoff_ms(0),
            1,
            false,
        ),
    ];
    for (i, (plan, refused, outcomes, next_due, failures, pending)) in cases.into_iter().enumerate()
    {
        let host = FakeHost::at(NOW);
        if refused {
            host.refuse_dispatch.set(Some(DispatchError::BadArgument));
        }
        let mut runner = runner(Script::new(&[plan], &[]));
        assert_eq!(runner.tick(&host), outcomes, "case {i}");
        let after = lease(&host);
        assert_eq!(
            (
                after.next_due_ms,
                after.failures,
                after.pending_until_ms > 0
            ),
            (next_due, failures, pending),
            "case {i}"
        );
        assert_eq!(runner.is_busy(), pending, "case {i}");
    }
}

#[test]
fn another_workers_lease_keeps_the_job_from_starting() {
    let host = FakeHost::at(NOW);
    let mut first = runner(Script::default());
    let mut second = Runner::new(Script::default(), 8, "control");
    first.tick(&host);
    assert!(second.tick(&host).is_empty());
    assert_eq!(second.job().seen, ["chores busy=false"]);
    assert_eq!(host.take_calls().len(), 1);
}

/// What the job makes of the answer, outcomes; the lease after: pending until, next due,
/// failures; calls that went out.
type AnswerCase = (Then, &'static [&'static str], u64, u64, u32, usize);

#[test]
fn what_an_answer_does_to_the_lease() {
    let due = NOW + 10_000;
    // Answers come 500 ms after the call.
    let later = NOW + 500;
    let cases: [AnswerCase; 4] = [
        (Then::Done(Some(due)), &["done 1"], 0, due, 0, 0),
        (
            Then::Done(None),
            &["done 1"],
            0,
            later + backoff_ms(0),
            1,
            0,
        ),
        // A follow-up: the lease is extended from now, the next call goes out.
        (Then::Next, &["next after 1"], CLAIMED_UNTIL + 500, 0, 0, 1),
        // The lease is someone else's now: left as it was.
        (Then::Lost, &["lost 1"], CLAIMED_UNTIL, 0, 0, 0),
    ];
    for (i, (then, outcomes, pending_until, next_due, failures, calls)) in
        cases.into_iter().enumerate()
    {
        let host = FakeHost::at(NOW);
        let mut runner = runner(Script::new(&[Plan::Call], &[then]));
        runner.tick(&host);
        let token = host.take_calls()[0].token;
        host.now.set(later);
        let size = host.respond(Some(200), b"{}");
        assert_eq!(runner.on_response(&host, token, size), outcomes, "case {i}");
        let after = lease(&host);
        assert_eq!(
            (after.pending_until_ms, after.next_due_ms, after.failures),
            (pending_until, next_due, failures),
            "case {i}"
        );
        let next = host.take_calls();
        assert_eq!(next.len(), calls, "case {i}");
        assert_eq!(runner.is_busy(), calls == 1, "case {i}");
        if let Some(next) = next.first() {
            assert_eq!(next.path(), "/call/2");
            assert!(runner.awaits(next.token) && !runner.awaits(1));
        }
    }
}

#[test]
fn a_call_past_its_deadline_is_abandoned_and_its_late_answer_ignored() {
    let host = FakeHost::at(NOW);
    let mut runner = runner(Script::default());
    runner.tick(&host);
    let token = host.take_calls()[0].token;
    host.now.set(NOW + 2_000 + DEADLINE_SLACK_MS);
    assert_eq!(runner.tick(&host), vec!["1 failed: no answer in time"]);
    assert!(!runner.is_busy() && !runner.awaits(token));
    // Backing off: the same tick did not start again, and the answer that comes late is not
    // the job's.
    assert!(host.take_calls().is_empty());
    let size = host.respond(Some(200), b"late");
    assert!(runner.on_response(&host, token, size).is_empty());
    assert_eq!(lease(&host).failures, 1);
    host.now
        .set(NOW + 2_000 + DEADLINE_SLACK_MS + backoff_ms(0));
    assert_eq!(runner.tick(&host), vec!["started 2"]);
}

#[test]
fn an_answer_with_another_token_is_not_the_jobs() {
    let host = FakeHost::at(NOW);
    let mut runner = runner(Script::default());
    runner.tick(&host);
    let token = host.take_calls()[0].token;
    let size = host.respond(Some(200), b"");
    assert!(runner.on_response(&host, token + 1, size).is_empty());
    assert!(runner.awaits(token));
}

#[test]
fn the_body_is_read_when_it_fits_and_announced_by_size_otherwise() {
    // (body, job's limit, what the job sees)
    let cases: [(&[u8], usize, &str); 4] = [
        (b"{}", 16, "Some(\"{}\") 2"),
        (b"{}", 2, "Some(\"{}\") 2"),
        (b"{}", 1, "None 2"),
        (b"", 16, "None 0"),
    ];
    for (body, max_body, seen) in cases {
        let host = FakeHost::at(NOW);
        let mut runner = runner(Script {
            max_body,
            ..Script::default()
        });
        runner.tick(&host);
        let token = host.take_calls()[0].token;
        let size = host.respond(Some(503), body);
        runner.on_response(&host, token, size);
        assert_eq!(
            runner.job().seen.last().unwrap(),
            &format!("answer to 1: Some(503) {seen}")
        );
    }
}

#[test]
fn an_eager_job_starts_again_as_soon_as_it_is_done() {
    let host = FakeHost::at(NOW);
    let mut eager = runner(Script {
        eager: true,
        ..Script::new(&[], &[Then::Done(Some(NOW))])
    });
    let outcomes = answered(&mut eager, &host, Some(200));
    assert_eq!(outcomes, ["done 1", "started 2"]);
    assert_eq!(host.take_calls()[0].path(), "/call/2");
    // A lazy one waits for the next tick.
    let host = FakeHost::at(NOW);
    let mut lazy = runner(Script::new(&[], &[Then::Done(Some(NOW))]));
    assert_eq!(answered(&mut lazy, &host, Some(200)), ["done 1"]);
    assert!(host.take_calls().is_empty());
}
