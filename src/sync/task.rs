//! The one mechanism behind every background job: a call in flight, its token, its deadline,
//! the lease that makes the job one worker's per Envoy, and the backoff after a failure.
//!
//! A job (`refresh::Refresh`, `usage::Usage`, `fleet::FleetSync`) implements [`Job`]: what it
//! does on every tick, the call it makes once it holds its lease, and what an answer (or its
//! absence) does to it. It never sees a token, a deadline or its lease's schedule: a
//! [`Runner`] keeps those, the same way for every job:
//!
//! - every tick: the job's chores; then, with a call in flight, nothing until the call's own
//!   deadline (its timeout plus `DEADLINE_SLACK_MS`, in case Envoy never fires it), when the call
//!   is abandoned as failed; with none, it tries to claim the job's lease (`lease.rs`) until
//!   that deadline plus `LEASE_MARGIN_MS` and, won, asks the job to start;
//! - a call is dispatched through `Host`; a refusal is a failure at once;
//! - an answer whose token is not the one awaited is not this job's (`awaits`);
//! - a finished call releases the lease: on success with the schedule the job gives, on failure
//!   with the shared backoff of `lease::release`; a follow-up call (a snapshot's next page)
//!   extends the lease instead; a job that lost its lease meanwhile leaves it alone.
//!
//! The transitions are pure over `Host`, table-tested with a scripted job in `task/tests.rs`.
//!
//! A new job or report stream (a later issue's usage-insight events, say) plugs in without a
//! state machine of its own: implement [`Job`] beside the others in `sync/` (its lease key,
//! the call's timeout, `start`, `on_response`, `on_failure`; what it must remember about the
//! call in flight is `Job::Pending`, handed back with the answer), then give it to the worker in
//! `background/` (`WorkerJob`: what it takes from the worker each tick, how its outcomes are
//! logged and counted) and add its `Runner` to `Background::new`. Answers reach it by token with
//! no further wiring.

use std::time::Duration;

use crate::config::{ControlAuth, ControlConfig};
use crate::host::{DispatchError, Host};
use crate::sync::{identity, lease};

/// The status that refuses a credential: the enrolled one is forgotten and enrolled again.
const UNAUTHORIZED: u32 = 401;

/// Our own deadline for a call: its timeout plus this, in case Envoy never fires it.
pub const DEADLINE_SLACK_MS: u64 = 1_000;
/// How much longer than its holder's own deadline a lease lasts: while the holder may still act
/// on an answer, no other worker can claim the job.
pub const LEASE_MARGIN_MS: u64 = 2_000;

/// An HTTP call to the control service's cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Pseudo-headers (`:method`, `:path`, `:authority`) and headers, in order.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl Call {
    /// A JSON POST to the control service at `path`, as `control` says to reach it.
    pub fn post_json(control: &ControlConfig, path: &str, body: Vec<u8>) -> Call {
        Call::post(control, path, "application/json", None, body)
    }

    /// A POST of `body` as `content_type`, asking for an answer in `accept` when given.
    pub fn post(
        control: &ControlConfig,
        path: &str,
        content_type: &str,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Call {
        let mut headers = vec![
            (":method", "POST".to_string()),
            (":path", path.to_string()),
            (":authority", control.authority.clone()),
            ("content-type", content_type.to_string()),
        ];
        if let Some(accept) = accept {
            headers.push(("accept", accept.to_string()));
        }
        Call {
            headers: headers
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
            body: Some(body),
            timeout: control.timeout,
        }
    }

    /// A header's value (pseudo-headers included).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `:path` asked for.
    pub fn path(&self) -> &str {
        self.header(":path").unwrap_or_default()
    }
}

/// The answer to a job's call, as the host delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// HTTP status; `None` when the call ended without a response.
    pub status: Option<u32>,
    /// The body, when it is not empty and within `Job::max_body_bytes` (and readable).
    pub body: Option<&'a [u8]>,
    /// The body's size as announced, read or not.
    pub body_size: usize,
}

/// Why a call came to nothing before any answer reached its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The host did not start it.
    Dispatch {
        cluster: String,
        error: DispatchError,
    },
    /// No answer by our own deadline.
    TimedOut,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Dispatch { cluster, error } => write!(
                f,
                "could not call cluster {cluster:?} ({error:?}); is it defined in the Envoy config?"
            ),
            CallError::TimedOut => f.write_str("no answer in time"),
        }
    }
}

impl std::error::Error for CallError {}

/// The shared-data lease a job runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLease {
    pub key: &'static str,
    /// Claimed with `lease::try_claim_sticky` (the last holder keeps it) rather than `try_claim`.
    pub sticky: bool,
}

/// What a job does once it holds its lease.
#[derive(Debug)]
pub enum Start<P, O> {
    /// Make this call; `pending` comes back with its answer, `report` is reported now.
    Call {
        call: Call,
        pending: P,
        report: Option<O>,
    },
    /// Nothing to send: the lease is released, the job next due at `next_due_ms`.
    Idle { next_due_ms: u64 },
    /// Failed before any call: the lease is released with backoff.
    Failed(O),
}

/// Where an answer leaves a job.
#[derive(Debug)]
pub enum Step<P, O> {
    /// Done: the lease is released, the job next due at `next_due_ms` after a success, or
    /// after the backoff when `None` (a failure).
    Done {
        outcome: O,
        next_due_ms: Option<u64>,
    },
    /// Another call follows at once under the same lease (a snapshot's next page).
    Next { call: Call, pending: P, outcome: O },
    /// The lease passed to another worker meanwhile: the call is forgotten, the lease left be.
    Lost(O),
}

/// A background job: at most one call in flight, run by one worker per Envoy under a lease.
pub trait Job {
    /// What happened, for logs and metrics.
    type Outcome;
    /// What the job remembers about its call in flight (the batch to requeue on failure, a
    /// snapshot's paging state); the `Runner` keeps it with the token.
    type Pending;
    /// The lease that makes this job one worker's per Envoy.
    const LEASE: JobLease;

    /// Every tick, first, with or without a call in flight (`busy`): local chores.
    fn chores(&mut self, _host: &dyn Host, _busy: bool) {}
    /// Every tick with no call in flight, before claiming the lease: the timeout of the call
    /// the job would make now (the lease is claimed for that, `DEADLINE_SLACK_MS` and
    /// `LEASE_MARGIN_MS`).
    fn call_timeout(&mut self, host: &dyn Host) -> Duration;
    /// The lease is ours, with fencing token `fence`.
    fn start(&mut self, host: &dyn Host, fence: u64) -> Start<Self::Pending, Self::Outcome>;
    /// Largest answer body read into the VM; a bigger one is announced by size only.
    fn max_body_bytes(&self) -> usize {
        0
    }
    /// The answer to the call made with `pending`.
    fn on_response(
        &mut self,
        host: &dyn Host,
        pending: Self::Pending,
        response: Response<'_>,
    ) -> Step<Self::Pending, Self::Outcome>;
    /// The call made with `pending` came to nothing; the lease is released with backoff.
    fn on_failure(
        &mut self,
        host: &dyn Host,
        pending: Self::Pending,
        error: CallError,
    ) -> Self::Outcome;
    /// Whether the next call may start as soon as one is done, not at the next tick (long
    /// polling: the next is due at once).
    fn eager(&self) -> bool {
        false
    }
}

/// The bearer a runner's calls present (jobs build their calls without one).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Presents {
    /// Nothing added: the job's call carries its own (enrolling presents the enrollment token).
    Nothing,
    /// The token of the configuration.
    Token(String),
    /// The credential this Envoy enrolled for (`identity.rs`); the job waits for one.
    Enrolled,
}

#[derive(Debug)]
struct InFlight<P> {
    token: u32,
    deadline_ms: u64,
    pending: P,
    /// The enrolled credential the call presented, forgotten if it is refused.
    credential: Option<String>,
}

/// Runs a job: its call in flight, token, deadline, lease and backoff.
#[derive(Debug)]
pub struct Runner<J: Job> {
    job: J,
    /// This VM's identity in the lease.
    me: u64,
    cluster: String,
    in_flight: Option<InFlight<J::Pending>>,
    presents: Presents,
}

fn deadline_after(now_ms: u64, timeout: Duration) -> u64 {
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    now_ms
        .saturating_add(timeout_ms)
        .saturating_add(DEADLINE_SLACK_MS)
}

/// Claims `lease` for `me` until `deadline_ms` plus the margin: the fencing token, if won.
fn claim(host: &dyn Host, lease: JobLease, me: u64, now_ms: u64, deadline_ms: u64) -> Option<u64> {
    let until = deadline_ms.saturating_add(LEASE_MARGIN_MS);
    if lease.sticky {
        lease::try_claim_sticky(host, lease.key, me, now_ms, until)
    } else {
        lease::try_claim(host, lease.key, me, now_ms, until)
    }
}

/// Starts `call` to `cluster`: its token.
fn send(host: &dyn Host, cluster: &str, call: &Call) -> Result<u32, CallError> {
    let headers: Vec<(&str, &str)> = call
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    host.start_http_call(cluster, &headers, call.body.as_deref(), call.timeout)
        .map_err(|error| CallError::Dispatch {
            cluster: cluster.to_string(),
            error,
        })
}

/// The answer being delivered: its status, and its body when that is not empty and at most
/// `max_body` bytes.
fn read_answer(
    host: &dyn Host,
    body_size: usize,
    max_body: usize,
) -> (Option<u32>, Option<Vec<u8>>) {
    let status = host.http_call_status();
    let body = (body_size > 0 && body_size <= max_body)
        .then(|| host.http_call_body(body_size))
        .flatten();
    (status, body)
}

impl<J: Job> Runner<J> {
    /// Runs `job` for the VM `me`, calling `cluster`.
    pub fn new(job: J, me: u64, cluster: &str) -> Runner<J> {
        Runner {
            job,
            me,
            cluster: cluster.to_string(),
            in_flight: None,
            presents: Presents::Nothing,
        }
    }

    /// Calls present what `control` authenticates with: its token, or the credential this Envoy
    /// enrolled for, in which case the job starts only once one is held, and a 401 answer
    /// forgets it, so it is enrolled again.
    pub fn presenting(mut self, control: &ControlConfig) -> Runner<J> {
        self.presents = match &control.auth {
            ControlAuth::Token(token) => Presents::Token(token.clone()),
            ControlAuth::Enroll(_) => Presents::Enrolled,
        };
        self
    }

    pub fn job(&self) -> &J {
        &self.job
    }

    pub fn job_mut(&mut self) -> &mut J {
        &mut self.job
    }

    /// Whether a call is in flight.
    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether the answer with `token` is this job's.
    pub fn awaits(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.token == token)
    }

    /// Called on every tick; returns what happened, oldest first.
    pub fn tick(&mut self, host: &dyn Host) -> Vec<J::Outcome> {
        let mut outcomes = Vec::new();
        self.step(host, &mut outcomes);
        outcomes
    }

    fn step(&mut self, host: &dyn Host, outcomes: &mut Vec<J::Outcome>) {
        self.job.chores(host, self.in_flight.is_some());
        let now = host.now_ms();
        if let Some(in_flight) = self.in_flight.take_if(|f| now >= f.deadline_ms) {
            outcomes.push(self.fail(host, in_flight.pending, CallError::TimedOut));
        }
        if self.in_flight.is_some() {
            return;
        }
        if self.presents == Presents::Enrolled && identity::current(host).is_none() {
            // Not enrolled yet (or refused and enrolling again): nothing to present.
            return;
        }
        let deadline_ms = deadline_after(now, self.job.call_timeout(host));
        let Some(fence) = claim(host, J::LEASE, self.me, now, deadline_ms) else {
            return;
        };
        match self.job.start(host, fence) {
            Start::Call {
                call,
                pending,
                report,
            } => {
                outcomes.extend(report);
                self.dispatch(host, call, pending, deadline_ms, outcomes);
            }
            Start::Idle { next_due_ms } => self.release(host, Some(next_due_ms)),
            Start::Failed(outcome) => {
                self.release(host, None);
                outcomes.push(outcome);
            }
        }
    }

    fn dispatch(
        &mut self,
        host: &dyn Host,
        mut call: Call,
        pending: J::Pending,
        deadline_ms: u64,
        outcomes: &mut Vec<J::Outcome>,
    ) {
        let credential = match &self.presents {
            Presents::Nothing => None,
            Presents::Token(token) => {
                call.headers
                    .push(("authorization".into(), format!("Bearer {token}")));
                None
            }
            Presents::Enrolled => {
                let credential = identity::current(host).map(|enrolled| enrolled.credential);
                if let Some(credential) = &credential {
                    call.headers
                        .push(("authorization".into(), format!("Bearer {credential}")));
                }
                credential
            }
        };
        match send(host, &self.cluster, &call) {
            Ok(token) => {
                self.in_flight = Some(InFlight {
                    token,
                    deadline_ms,
                    pending,
                    credential,
                });
            }
            Err(error) => outcomes.push(self.fail(host, pending, error)),
        }
    }

    fn fail(&mut self, host: &dyn Host, pending: J::Pending, error: CallError) -> J::Outcome {
        let outcome = self.job.on_failure(host, pending, error);
        self.release(host, None);
        outcome
    }

    fn release(&self, host: &dyn Host, next_due_ms: Option<u64>) {
        lease::release(host, J::LEASE.key, self.me, host.now_ms(), next_due_ms);
    }

    /// The host delivers the answer to call `token`, whose body is `body_size` bytes; returns
    /// what happened, oldest first (nothing when the call is not this job's).
    pub fn on_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        body_size: usize,
    ) -> Vec<J::Outcome> {
        let mut outcomes = Vec::new();
        let Some(in_flight) = self.in_flight.take_if(|f| f.token == token) else {
            return outcomes;
        };
        let (status, body) = read_answer(host, body_size, self.job.max_body_bytes());
        if let (Some(UNAUTHORIZED), Some(credential)) = (status, &in_flight.credential) {
            identity::refused(host, credential);
        }
        let response = Response {
            status,
            body: body.as_deref(),
            body_size,
        };
        match self.job.on_response(host, in_flight.pending, response) {
            Step::Done {
                outcome,
                next_due_ms,
            } => {
                self.release(host, next_due_ms);
                outcomes.push(outcome);
                if self.job.eager() {
                    self.step(host, &mut outcomes);
                }
            }
            Step::Next {
                call,
                pending,
                outcome,
            } => {
                outcomes.push(outcome);
                let deadline_ms = deadline_after(host.now_ms(), call.timeout);
                let until = deadline_ms.saturating_add(LEASE_MARGIN_MS);
                lease::extend(host, J::LEASE.key, self.me, until);
                self.dispatch(host, call, pending, deadline_ms, &mut outcomes);
            }
            Step::Lost(outcome) => outcomes.push(outcome),
        }
        outcomes
    }
}

#[cfg(test)]
mod tests;
