//! Pulling the snapshot from the control service: the `Refresh` job (`sync/task.rs` runs it).
//!
//! Every worker VM ticks, but only one fetch runs per Envoy at a time: the worker that wins a
//! compare-and-swap on the shared `keygate.sync` lease fetches and writes the store for all.
//! The lease carries its own deadline, so a worker that dies or whose call never completes
//! (Envoy can queue a call to a cluster with no healthy host without firing its timeout) is
//! replaced on a later tick. Locally, the runner also enforces the call's own deadline and
//! hands the job only the answer whose token it waits for.
//!
//! Each claim of the lease comes with a fencing token, which the holder first writes into the
//! store record; every later write of that record (`store::update_meta`) is refused to a holder
//! whose token is older, so a worker whose lease expired mid-load can never publish what it
//! loaded. Before writing a page of key entries the holder checks that its lease is still
//! current and unexpired; the lease outlives the holder's own deadline by
//! `task::LEASE_MARGIN_MS`, so a page is never written while another holder could exist.
//!
//! `page.rs` applies an answer to the store, `error.rs` says why a refresh failed; the tests
//! (paging, deltas, quarantine, fencing, takeovers, clock steps) sit in `tests.rs` and
//! `takeover_tests.rs`.

use std::time::Duration;

use crate::config::ControlConfig;
use crate::host::Host;
use crate::store::shard::{self, Change};
use crate::store::{self, StoreMeta, STORE_FORMAT};
use crate::sync::lease;
use crate::sync::task::{Call, CallError, Job, JobLease, Response, Start, Step};
use keygate_contract::record::Quarantined;

mod error;
mod page;

pub use error::{MetaStep, RefreshError};

pub const SYNC_KEY: &str = "keygate.sync";
/// How long after a full snapshot goes live the set it replaced is swept: a request reads the
/// store record and then its shard within one callback, microseconds apart, so no request can
/// still be reading the replaced set by then.
const SWEEP_DELAY_MS: u64 = 2_000;
/// Shards swept per tick, so that no tick holds a worker for long.
const SWEEP_SHARDS_PER_TICK: u32 = 4_096;
/// Largest snapshot page we accept; bigger answers are rejected unread.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// What snapshot requests ask for: the compact encoding (`contract::compact`), JSON otherwise.
pub const ACCEPT: &str = "application/vnd.keygate.snapshot+binary, application/json;q=0.5";

/// How an answer (or its absence) turned out, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A page was applied and more follow: the call for the next one (at `path`) went out.
    NextPage { path: String },
    /// The snapshot (all pages) was applied.
    Applied { version: u64, keys: u64, full: bool },
    /// 304: nothing changed.
    Unchanged,
    /// Failed; the store is untouched beyond pages already applied.
    Failed(RefreshError),
    /// The lease passed to another worker while the call was out: its answer is not used.
    Lost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Not known until the first page says whether it is full or a delta.
    Unknown,
    Full {
        generation: u64,
    },
    Delta {
        generation: u64,
    },
}

/// Where a snapshot load stands while its call is out (the runner keeps it with the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// Fencing token of our lease claim.
    fence: u64,
    /// What we asked for: version and epoch we have.
    since: Option<(u64, String)>,
    mode: Mode,
    first_version: u64,
    epoch: String,
    cursor: Option<String>,
    /// How the pages applied so far changed the key counts (from empty for a full load).
    change: Change,
}

/// What the last `call_timeout` read the next call would ask for.
#[derive(Debug, Default)]
struct Plan {
    since: Option<(u64, String)>,
    long_poll: bool,
}

/// The snapshot refresh of one VM.
#[derive(Debug)]
pub struct Refresh {
    /// Random per-VM identity (the lease's, and the jitter's seed).
    me: u64,
    config: ControlConfig,
    /// The most rate-limit counter slots the table may grow to (`rate_limits.slots`).
    rate_limit_slots: u64,
    plan: Plan,
    /// Records left out of pages applied since the last `take_quarantined`.
    quarantined: Vec<Quarantined>,
    /// The set of shards a full snapshot this VM published replaced, still to be emptied.
    sweep: Option<Sweep>,
}

/// Emptying the shard set a full snapshot replaced (`store::sweep_replaced`), a slice per tick.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sweep {
    set: u64,
    /// The generation that went live; only older shards are emptied.
    current: u64,
    next_shard: u32,
    due_ms: u64,
}

impl Refresh {
    pub fn new(me: u64, config: ControlConfig, rate_limit_slots: u64) -> Refresh {
        Refresh {
            me,
            config,
            rate_limit_slots,
            plan: Plan::default(),
            quarantined: Vec::new(),
            sweep: None,
        }
    }

    /// Sweeps the next slice of a replaced shard set, once it is due.
    fn sweep_some(&mut self, host: &dyn Host) {
        let Some(sweep) = self.sweep.as_mut() else {
            return;
        };
        if host.now_ms() < sweep.due_ms {
            return;
        }
        let end = sweep
            .next_shard
            .saturating_add(SWEEP_SHARDS_PER_TICK)
            .min(shard::SHARD_COUNT);
        store::sweep_replaced(host, sweep.set, sweep.current, sweep.next_shard..end);
        sweep.next_shard = end;
        if end >= shard::SHARD_COUNT {
            self.sweep = None;
        }
    }

    /// Records quarantined since the last call, for the log and the metric.
    pub fn take_quarantined(&mut self) -> Vec<Quarantined> {
        std::mem::take(&mut self.quarantined)
    }

    fn timeout(&self, long_poll: bool) -> Duration {
        if long_poll {
            self.config.timeout + self.config.long_poll_wait
        } else {
            self.config.timeout
        }
    }

    /// Interval until the next plain poll, with up to 10% jitter so a fleet of proxies
    /// spreads out.
    fn next_due_after_success(&self, now: u64) -> u64 {
        if self.config.long_poll_wait > Duration::ZERO {
            return now;
        }
        let interval = self.config.refresh_interval.as_millis() as u64;
        let jitter_span = (interval / 10).max(1);
        now + interval + (self.me ^ now.rotate_left(17)) % jitter_span
    }

    fn build_request(
        &self,
        since: Option<&(u64, String)>,
        cursor: Option<&str>,
        long_poll: bool,
    ) -> Call {
        let mut path = format!("{}?limit={}", self.config.path, self.config.page_size);
        let mut headers = vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), String::new()),
            (":authority".to_string(), self.config.authority.clone()),
            // Compact binary preferred; a backend that only speaks JSON answers JSON, and the
            // page is parsed by its first bytes either way.
            ("accept".to_string(), ACCEPT.to_string()),
        ];
        if let Some((version, epoch)) = since {
            path.push_str(&format!("&since={version}&epoch={epoch}"));
            if long_poll && cursor.is_none() {
                path.push_str(&format!("&wait={}", self.config.long_poll_wait.as_secs()));
            }
            if cursor.is_none() {
                headers.push((
                    "if-none-match".to_string(),
                    format!("\"{epoch}-{version}\""),
                ));
            }
        }
        if let Some(cursor) = cursor {
            path.push_str("&cursor=");
            path.push_str(cursor);
        }
        headers[1].1 = path;
        Call {
            headers,
            body: None,
            timeout: self.timeout(long_poll),
        }
    }

    /// Whether our lease (fencing token `fence`) is still current and unexpired, and no newer
    /// holder wrote the store.
    fn still_holder(&self, host: &dyn Host, fence: u64) -> bool {
        lease::held_by(host, SYNC_KEY, self.me, fence, host.now_ms())
            && store::read_meta(host).fence == fence
    }

    /// The step that ends a load that succeeded: released on the success schedule.
    fn succeeded(&self, host: &dyn Host, outcome: Outcome) -> Step<Fetch, Outcome> {
        Step::Done {
            outcome,
            next_due_ms: Some(self.next_due_after_success(host.now_ms())),
        }
    }
}

impl Job for Refresh {
    type Outcome = Outcome;
    type Pending = Fetch;
    const LEASE: JobLease = JobLease {
        key: SYNC_KEY,
        // Pages are parsed in the holder's linear memory, which never shrinks: kept in one VM,
        // that memory is taken once per Envoy instead of once per worker.
        sticky: true,
    };

    fn chores(&mut self, host: &dyn Host, busy: bool) {
        if !busy {
            self.sweep_some(host);
        }
    }

    fn call_timeout(&mut self, host: &dyn Host) -> Duration {
        let meta = store::read_meta(host);
        let since = (meta.loaded() && meta.format == STORE_FORMAT)
            .then(|| (meta.version, meta.epoch.clone()));
        let long_poll = since.is_some() && self.config.long_poll_wait > Duration::ZERO;
        self.plan = Plan { since, long_poll };
        self.timeout(long_poll)
    }

    fn start(&mut self, host: &dyn Host, fence: u64) -> Start<Fetch, Outcome> {
        // Fence the store first: from now on no earlier holder can publish.
        if let Err(error) = store::update_meta(host, fence, StoreMeta::clone) {
            let step = MetaStep::Take;
            return Start::Failed(Outcome::Failed(RefreshError::Meta { step, error }));
        }
        let Plan { since, long_poll } = std::mem::take(&mut self.plan);
        let call = self.build_request(since.as_ref(), None, long_poll);
        let fetch = Fetch {
            fence,
            since,
            mode: Mode::Unknown,
            first_version: 0,
            epoch: String::new(),
            cursor: None,
            change: Change::default(),
        };
        Start::Call {
            call,
            pending: fetch,
            report: None,
        }
    }

    fn max_body_bytes(&self) -> usize {
        MAX_BODY_BYTES
    }

    fn on_response(
        &mut self,
        host: &dyn Host,
        fetch: Fetch,
        response: Response<'_>,
    ) -> Step<Fetch, Outcome> {
        if !self.still_holder(host, fetch.fence) {
            return Step::Lost(Outcome::Lost);
        }
        let result = match response.status {
            Some(304) => self.finish_unchanged(host, &fetch),
            Some(200) if response.body_size > MAX_BODY_BYTES => Err(RefreshError::TooLarge {
                size: response.body_size,
            }),
            Some(200) => self.apply_page(host, fetch, response.body.unwrap_or_default()),
            Some(other) => Err(RefreshError::Status(other)),
            None => Err(RefreshError::NoResponse),
        };
        result.unwrap_or_else(|error| Step::Done {
            outcome: Outcome::Failed(error),
            next_due_ms: None,
        })
    }

    fn on_failure(&mut self, _host: &dyn Host, _fetch: Fetch, error: CallError) -> Outcome {
        Outcome::Failed(RefreshError::Call(error))
    }

    /// With long polling the next call is due at once; without, the lease's schedule makes the
    /// early try a no-op.
    fn eager(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod takeover_tests;
#[cfg(test)]
mod tests;
