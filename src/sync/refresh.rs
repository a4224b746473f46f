//! Pulling the snapshot from the control service.
//!
//! Every worker VM ticks, but only one fetch runs per Envoy at a time: the worker that wins a
//! compare-and-swap on the shared `keygate.sync` lease fetches and writes the store for all.
//! The lease carries its own deadline, so a worker that dies or whose call never completes
//! (Envoy can queue a call to a cluster with no healthy host without firing its timeout) is
//! replaced on a later tick. Locally, the holder also enforces its own deadline and ignores any
//! response whose token is not the one it waits for.
//!
//! Each claim of the lease comes with a fencing token, which the holder first writes into the
//! store record; every later write of that record (`store::update_meta`) is refused to a holder
//! whose token is older, so a worker whose lease expired mid-load can never publish what it
//! loaded. Before writing a page of key entries the holder checks that its lease is still
//! current and unexpired; the lease outlives the holder's own deadline by `LEASE_MARGIN_MS`,
//! so a page is never written while another holder could exist.
//!
//! Why this file is long: half of it is the tests of the refresh state machine (paging, deltas,
//! quarantine, fencing, takeovers, clock steps), beside the code they pin.

use std::time::Duration;

use crate::config::ControlConfig;
use crate::host::Host;
use crate::limits::counters;
use crate::store::shard::{self, Change};
use crate::store::{self, MetaError, StoreMeta, STORE_FORMAT};
use crate::sync::lease;
use keygate_contract::page::SnapshotPage;
use keygate_contract::record::{validate_page, Quarantined};

pub const SYNC_KEY: &str = "keygate.sync";
/// How long after a full snapshot goes live the set it replaced is swept: a request reads the
/// store record and then its shard within one callback, microseconds apart, so no request can
/// still be reading the replaced set by then.
const SWEEP_DELAY_MS: u64 = 2_000;
/// Shards swept per tick, so that no tick holds a worker for long.
const SWEEP_SHARDS_PER_TICK: u32 = 4_096;
/// Largest snapshot page we accept; bigger answers are rejected unread.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const LEASE_MARGIN_MS: u64 = 2_000;
/// What snapshot requests ask for: the compact encoding (`contract::compact`), JSON otherwise.
pub const ACCEPT: &str = "application/vnd.keygate.snapshot+binary, application/json;q=0.5";

/// An HTTP call to make to the control service cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// How a response (or its absence) turned out, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A response for a call we no longer wait for.
    Ignored,
    /// A page was applied and more follow: dispatch this call next.
    NextPage(CallRequest),
    /// The snapshot (all pages) was applied.
    Applied { version: u64, keys: u64, full: bool },
    /// 304: nothing changed.
    Unchanged,
    /// Failed (status, transport, timeout or rejected snapshot); the store is untouched
    /// beyond pages already applied.
    Failed { reason: String, rejected: bool },
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

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fetch {
    token: u32,
    /// Fencing token of our lease claim.
    fence: u64,
    deadline_ms: u64,
    /// What we asked for: version and epoch we have.
    since: Option<(u64, String)>,
    mode: Mode,
    first_version: u64,
    epoch: String,
    cursor: Option<String>,
    /// How the pages applied so far changed the key counts (from empty for a full load).
    change: Change,
}

/// Per-VM refresh driver.
#[derive(Debug)]
pub struct Refresher {
    /// Random per-VM identity for the lease.
    me: u64,
    config: ControlConfig,
    /// The most rate-limit counter slots the table may grow to (`rate_limits.slots`).
    rate_limit_slots: u64,
    fetch: Option<Fetch>,
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

impl Refresher {
    pub fn new(me: u64, config: ControlConfig, rate_limit_slots: u64) -> Refresher {
        Refresher {
            me,
            config,
            rate_limit_slots,
            fetch: None,
            quarantined: Vec::new(),
            sweep: None,
        }
    }

    /// Sweeps the next slice of a replaced shard set, once it is due and no fetch is running.
    fn sweep_some(&mut self, host: &dyn Host) {
        let Some(sweep) = self.sweep.as_mut() else {
            return;
        };
        if self.fetch.is_some() || host.now_ms() < sweep.due_ms {
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

    fn call_timeout(&self, long_poll: bool) -> Duration {
        if long_poll {
            self.config.timeout + self.config.long_poll_wait
        } else {
            self.config.timeout
        }
    }

    /// Our own deadline for a call: its timeout plus a second, in case Envoy never fires it.
    fn deadline_ms(&self, now: u64, long_poll: bool) -> u64 {
        now + self.call_timeout(long_poll).as_millis() as u64 + 1_000
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
    ) -> CallRequest {
        let mut path = format!("{}?limit={}", self.config.path, self.config.page_size);
        let mut headers = vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), String::new()),
            (":authority".to_string(), self.config.authority.clone()),
            (
                "authorization".to_string(),
                format!("Bearer {}", self.config.token),
            ),
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
        headers[1].1 = path.clone();
        CallRequest {
            path,
            headers,
            timeout: self.call_timeout(long_poll),
        }
    }

    /// Whether this VM is waiting for a response.
    pub fn is_fetching(&self) -> bool {
        self.fetch.is_some()
    }

    /// Called on every tick. Expires our own overdue call, then tries to claim the lease when
    /// a refresh is due. Returns the call to dispatch, if any, plus an outcome to report when
    /// an overdue call was abandoned.
    pub fn poll(&mut self, host: &dyn Host) -> (Option<CallRequest>, Option<Outcome>) {
        self.sweep_some(host);
        let now = host.now_ms();
        let mut abandoned = None;
        if let Some(fetch) = &self.fetch {
            if now < fetch.deadline_ms {
                return (None, None);
            }
            self.fetch = None;
            abandoned = Some(self.finish_failure(
                host,
                "control service did not answer in time".into(),
                false,
            ));
        }
        let meta = store::read_meta(host);
        let since = (meta.loaded() && meta.format == STORE_FORMAT)
            .then(|| (meta.version, meta.epoch.clone()));
        let long_poll = since.is_some() && self.config.long_poll_wait > Duration::ZERO;
        let deadline = self.deadline_ms(now, long_poll);
        let Some(fence) =
            lease::try_claim_sticky(host, SYNC_KEY, self.me, now, deadline + LEASE_MARGIN_MS)
        else {
            return (None, abandoned);
        };
        // Fence the store first: from now on no earlier holder can publish.
        if let Err(error) = store::update_meta(host, fence, StoreMeta::clone) {
            return (
                None,
                Some(self.finish_failure(
                    host,
                    format!("could not take the store record: {error:?}"),
                    false,
                )),
            );
        }
        let request = self.build_request(since.as_ref(), None, long_poll);
        self.fetch = Some(Fetch {
            token: 0,
            fence,
            deadline_ms: deadline,
            since,
            mode: Mode::Unknown,
            first_version: 0,
            epoch: String::new(),
            cursor: None,
            change: Change::default(),
        });
        (Some(request), abandoned)
    }

    /// The call was dispatched with this token.
    pub fn dispatched(&mut self, token: u32) {
        if let Some(fetch) = &mut self.fetch {
            fetch.token = token;
        }
    }

    /// The host refused to dispatch the call (unknown cluster, …).
    pub fn dispatch_failed(&mut self, host: &dyn Host, reason: String) -> Outcome {
        self.fetch = None;
        self.finish_failure(host, reason, false)
    }

    /// Whether our lease is still current and unexpired, and no newer holder wrote the store.
    fn still_holder(&self, host: &dyn Host) -> bool {
        let Some(fence) = self.fetch.as_ref().map(|f| f.fence) else {
            return false;
        };
        lease::held_by(host, SYNC_KEY, self.me, fence, host.now_ms())
            && store::read_meta(host).fence == fence
    }

    /// Releases the lease and schedules the next refresh.
    fn release(&self, host: &dyn Host, failed: bool) {
        let now = host.now_ms();
        let next_due = (!failed).then(|| self.next_due_after_success(now));
        lease::release(host, SYNC_KEY, self.me, now, next_due);
    }

    fn finish_failure(&self, host: &dyn Host, reason: String, rejected: bool) -> Outcome {
        self.release(host, true);
        Outcome::Failed { reason, rejected }
    }

    /// Handles the response to call `token`: `status` is the HTTP status (`None` when the call
    /// failed without one), `body` the response body as read and `body_size` its announced size
    /// (the body is not read at all when that is over the limit).
    pub fn on_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        status: Option<u32>,
        body: &[u8],
        body_size: usize,
    ) -> Outcome {
        match &self.fetch {
            Some(fetch) if fetch.token == token => {}
            _ => return Outcome::Ignored,
        }
        if !self.still_holder(host) {
            self.fetch = None;
            return Outcome::Ignored;
        }
        let result = match status {
            Some(304) => self.finish_unchanged(host),
            Some(200) if body_size > MAX_BODY_BYTES => Err((
                format!(
                    "snapshot page of {body_size} bytes is over the {MAX_BODY_BYTES} byte limit"
                ),
                true,
            )),
            Some(200) => self.apply_page(host, body),
            Some(other) => Err((format!("control service answered HTTP {other}"), false)),
            None => Err((
                "call to the control service failed (no response)".to_string(),
                false,
            )),
        };
        match result {
            Ok(outcome) => outcome,
            Err((reason, rejected)) => {
                self.fetch = None;
                self.finish_failure(host, reason, rejected)
            }
        }
    }

    fn finish_unchanged(&mut self, host: &dyn Host) -> Result<Outcome, (String, bool)> {
        if self.fetch.as_ref().is_some_and(|f| f.cursor.is_some()) {
            return Err(("304 for a follow-up page".into(), true));
        }
        let now = host.now_ms();
        let fence = self.fetch.as_ref().map_or(0, |f| f.fence);
        store::update_meta(host, fence, |meta| StoreMeta {
            last_success_ms: now,
            ..meta.clone()
        })
        .map_err(|e| (publish_error("record refresh", e), false))?;
        self.fetch = None;
        self.release(host, false);
        Ok(Outcome::Unchanged)
    }

    fn apply_page(&mut self, host: &dyn Host, body: &[u8]) -> Result<Outcome, (String, bool)> {
        let snapshot =
            SnapshotPage::parse(body).map_err(|e| (format!("snapshot rejected: {e}"), true))?;
        let meta = store::read_meta(host);
        let now = host.now_ms();
        let page_deadline_ms = self.deadline_ms(now, false);
        let Some(fetch) = self.fetch.as_mut() else {
            return Err(("no fetch in progress".into(), false));
        };
        if fetch.mode == Mode::Unknown {
            fetch.first_version = snapshot.version;
            fetch.epoch = snapshot.epoch.clone();
            fetch.mode = if snapshot.full {
                // Above every generation ever written, so shards an aborted load left behind
                // never count as current, even after the clock steps back; and of the other
                // parity than the live one, so the load fills the spare set of shards.
                let mut generation = now
                    .max(meta.generation.saturating_add(1))
                    .max(meta.high_water.saturating_add(1));
                if meta.loaded() && generation % 2 == meta.generation % 2 {
                    generation += 1;
                }
                store::update_meta(host, fetch.fence, |current| StoreMeta {
                    high_water: current.high_water.max(generation),
                    ..current.clone()
                })
                .map_err(|e| (publish_error("reserve a generation", e), false))?;
                Mode::Full { generation }
            } else {
                match &fetch.since {
                    Some((since, epoch))
                        if *since == snapshot.since && *epoch == snapshot.epoch => {}
                    _ => {
                        return Err((
                            "snapshot rejected: delta does not start at our version".into(),
                            true,
                        ))
                    }
                }
                Mode::Delta {
                    generation: meta.generation,
                }
            };
        } else if snapshot.epoch != fetch.epoch
            || snapshot.full != matches!(fetch.mode, Mode::Full { .. })
        {
            return Err((
                "snapshot rejected: page does not belong to the same snapshot".into(),
                true,
            ));
        }
        let generation = match fetch.mode {
            Mode::Full { generation } | Mode::Delta { generation } => generation,
            Mode::Unknown => meta.generation,
        };
        let page = validate_page(&snapshot, generation)
            .map_err(|e| (format!("snapshot rejected: {e}"), true))?;
        // Checked again right before writing: the page took time to parse and validate.
        if !self.still_holder(host) {
            return Err((
                "refresh lease expired before the page was written".into(),
                false,
            ));
        }
        self.quarantined.extend(page.quarantined.iter().cloned());
        let Some(fetch) = self.fetch.as_mut() else {
            return Err(("no fetch in progress".into(), false));
        };
        fetch.change += store::write_page(host, &page, generation)
            .map_err(|e| (format!("could not write keys to shared data: {e:?}"), false))?;
        if let Some(cursor) = snapshot.next_cursor.filter(|c| !c.is_empty()) {
            if cursor
                .bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'))
            {
                return Err((
                    "snapshot rejected: next_cursor has characters not allowed in a URL".into(),
                    true,
                ));
            }
            fetch.cursor = Some(cursor.clone());
            fetch.deadline_ms = page_deadline_ms;
            let since = fetch.since.clone();
            self.extend_lease(host);
            return Ok(Outcome::NextPage(self.build_request(
                since.as_ref(),
                Some(&cursor),
                false,
            )));
        }
        let fetch = self
            .fetch
            .take()
            .ok_or_else(|| ("no fetch in progress".to_string(), false))?;
        let after = |count: u64, change: i64| (count as i64 + change).max(0) as u64;
        let (generation, keys, limited_keys, full) = match fetch.mode {
            Mode::Full { generation } => (
                generation,
                after(0, fetch.change.keys),
                after(0, fetch.change.limited),
                true,
            ),
            Mode::Delta { generation } => (
                generation,
                after(meta.keys, fetch.change.keys),
                after(meta.limited_keys, fetch.change.limited),
                false,
            ),
            Mode::Unknown => (meta.generation, meta.keys, meta.limited_keys, false),
        };
        // The lease holder is the only writer that may create entries, so it creates the
        // rate-limit slots before any request can count in them (see counters.rs), as many as
        // the snapshot's limited keys need.
        counters::grow(
            host,
            counters::wanted_capacity(limited_keys),
            self.rate_limit_slots,
            now,
        )
        .map_err(|e| (format!("could not create rate-limit slots: {e:?}"), false))?;
        let version = fetch.first_version;
        let epoch = fetch.epoch;
        store::update_meta(host, fetch.fence, |current| StoreMeta {
            generation,
            version,
            epoch: epoch.clone(),
            keys,
            limited_keys,
            last_success_ms: now,
            format: STORE_FORMAT,
            ..current.clone()
        })
        .map_err(|e| (publish_error("record snapshot", e), false))?;
        if full {
            self.sweep = Some(Sweep {
                set: (generation + 1) % 2,
                current: generation,
                next_shard: 0,
                due_ms: now + SWEEP_DELAY_MS,
            });
        }
        self.release(host, false);
        Ok(Outcome::Applied {
            version,
            keys,
            full,
        })
    }

    fn extend_lease(&self, host: &dyn Host) {
        let pending_until_ms = self.fetch.as_ref().map_or(0, |f| f.deadline_ms) + LEASE_MARGIN_MS;
        lease::extend(host, SYNC_KEY, self.me, pending_until_ms);
    }
}

fn publish_error(what: &str, error: MetaError) -> String {
    match error {
        MetaError::Fenced => {
            format!("could not {what}: the refresh lease passed to another worker")
        }
        MetaError::Write(error) => format!("could not {what}: shared data refused ({error:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::host::FakeHost;
    use crate::store::{lookup, read_meta};
    use crate::sync::lease::backoff_ms;
    use keygate_contract::key_hash::hash_key;

    fn control(extra: &str) -> ControlConfig {
        let json = format!(
            r#"{{"control":{{"cluster":"kc","token":"sync","refresh_interval":"10s","timeout":"2s"{extra}}}}}"#
        );
        Config::parse(json.as_bytes(), &|_| None).unwrap().control
    }

    fn record_json(secret: &str, active: bool) -> String {
        format!(
            r#"{{"id":"id_{secret}","hash":"{}","prefix":"pk_live_","name":"n","environment":"live","active":{active}}}"#,
            hash_key(secret)
        )
    }

    fn page(
        version: u64,
        full: bool,
        since: u64,
        keys: &[String],
        deleted: &[String],
        cursor: Option<&str>,
    ) -> Vec<u8> {
        let deleted: Vec<String> = deleted.iter().map(|d| format!("\"{d}\"")).collect();
        let cursor = cursor
            .map(|c| format!(r#","next_cursor":"{c}""#))
            .unwrap_or_default();
        format!(
            r#"{{"version":{version},"epoch":"E","full":{full},"since":{since},"keys":[{}],"deleted":[{}]{cursor}}}"#,
            keys.join(","),
            deleted.join(",")
        )
        .into_bytes()
    }

    /// Claims, dispatches with token 1 and answers; returns the outcome.
    fn fetch(
        refresher: &mut Refresher,
        host: &FakeHost,
        status: Option<u32>,
        body: &[u8],
    ) -> (CallRequest, Outcome) {
        let (request, _) = refresher.poll(host);
        let request = request.expect("a refresh should be due");
        refresher.dispatched(1);
        (
            request,
            refresher.on_response(host, 1, status, body, body.len()),
        )
    }

    #[test]
    fn first_load_then_delta_then_unchanged() {
        let host = FakeHost::at(1_000_000);
        let mut refresher = Refresher::new(7, control(""), 64);
        let body = page(
            3,
            true,
            0,
            &[record_json("k1", true), record_json("k2", true)],
            &[],
            None,
        );
        let (request, outcome) = fetch(&mut refresher, &host, Some(200), &body);
        assert_eq!(request.path, "/v1/snapshot?limit=10000");
        assert!(request
            .headers
            .contains(&("authorization".into(), "Bearer sync".into())));
        assert_eq!(
            outcome,
            Outcome::Applied {
                version: 3,
                keys: 2,
                full: true
            }
        );
        let meta = read_meta(&host);
        assert!(meta.loaded());
        assert!(lookup(&host, &hash_key("k1"), meta.generation).is_some());

        // Not due again until the interval (10 s, plus jitter) passes.
        assert_eq!(refresher.poll(&host).0, None);
        host.now.set(1_000_000 + 11_001);
        let delta = page(
            4,
            false,
            3,
            &[record_json("k3", true)],
            &[hash_key("k1")],
            None,
        );
        let (request, outcome) = fetch(&mut refresher, &host, Some(200), &delta);
        assert_eq!(request.path, "/v1/snapshot?limit=10000&since=3&epoch=E");
        assert!(request
            .headers
            .contains(&("if-none-match".into(), "\"E-3\"".into())));
        assert_eq!(
            outcome,
            Outcome::Applied {
                version: 4,
                keys: 2,
                full: false
            }
        );
        let meta = read_meta(&host);
        assert!(lookup(&host, &hash_key("k1"), meta.generation).is_none());
        assert!(lookup(&host, &hash_key("k3"), meta.generation).is_some());

        host.now.set(1_000_000 + 30_000);
        let (_, outcome) = fetch(&mut refresher, &host, Some(304), b"");
        assert_eq!(outcome, Outcome::Unchanged);
        assert_eq!(read_meta(&host).last_success_ms, 1_030_000);
    }

    #[test]
    fn a_store_written_in_another_layout_gets_a_full_snapshot() {
        let host = FakeHost::at(1_000_000);
        // What an older filter left in shared data before this VM was loaded in its place.
        store::update_meta(&host, 0, |_| StoreMeta {
            generation: 5,
            version: 9,
            epoch: "E".into(),
            keys: 1,
            last_success_ms: 999_000,
            format: 0,
            ..StoreMeta::default()
        })
        .unwrap();
        let mut refresher = Refresher::new(1, control(""), 64);
        let body = page(9, true, 0, &[record_json("k1", true)], &[], None);
        let (request, outcome) = fetch(&mut refresher, &host, Some(200), &body);
        assert_eq!(
            request.path, "/v1/snapshot?limit=10000",
            "no delta on records it cannot read"
        );
        assert!(matches!(outcome, Outcome::Applied { full: true, .. }));
        assert_eq!(read_meta(&host).format, STORE_FORMAT);
    }

    #[test]
    fn bad_snapshots_are_rejected_whole_and_the_last_good_one_serves() {
        let host = FakeHost::at(5_000);
        let mut refresher = Refresher::new(1, control(""), 64);
        fetch(
            &mut refresher,
            &host,
            Some(200),
            &page(1, true, 0, &[record_json("good", true)], &[], None),
        );
        let before = read_meta(&host);
        let bad_bodies: Vec<Vec<u8>> = vec![
            b"{\"version\":2,\"full\":tr".to_vec(),
            b"<html>".to_vec(),
            page(
                2,
                true,
                0,
                &[record_json("x", true), record_json("x", true)],
                &[],
                None,
            ),
            br#"{"version":2,"full":true,"keys":{"id":"a"}}"#.to_vec(),
            br#"{"version":-2,"full":true,"keys":[]}"#.to_vec(),
            page(2, false, 99, &[], &[], None),
            br#"{"version":2,"epoch":"E&since=0","full":true,"keys":[]}"#.to_vec(),
        ];
        for (i, body) in bad_bodies.iter().enumerate() {
            host.now.set(host.now.get() + 60_000);
            let (_, outcome) = fetch(&mut refresher, &host, Some(200), body);
            assert!(
                matches!(outcome, Outcome::Failed { rejected: true, .. }),
                "case {i}: {outcome:?}"
            );
            let meta = read_meta(&host);
            assert_eq!(
                (meta.version, meta.generation, meta.keys),
                (before.version, before.generation, before.keys)
            );
            assert!(
                lookup(&host, &hash_key("good"), meta.generation).is_some(),
                "case {i}"
            );
        }
        host.now.set(host.now.get() + 60_000);
        let (_, outcome) = fetch(&mut refresher, &host, Some(500), b"oops");
        assert!(matches!(
            outcome,
            Outcome::Failed {
                rejected: false,
                ..
            }
        ));
    }

    fn record_named(secret: &str, name: &str) -> String {
        format!(
            r#"{{"id":"id_{secret}","hash":"{}","prefix":"pk_live_","name":{},"environment":"live","active":true}}"#,
            hash_key(secret),
            serde_json::to_string(name).unwrap()
        )
    }

    #[test]
    fn a_bad_record_is_quarantined_and_everything_else_applies() {
        let host = FakeHost::at(5_000);
        let mut refresher = Refresher::new(1, control(""), 64);
        let full = page(
            1,
            true,
            0,
            &[
                record_json("revoked", true),
                record_json("bad", true),
                record_json("kept", true),
            ],
            &[],
            None,
        );
        fetch(&mut refresher, &host, Some(200), &full);
        assert!(refresher.take_quarantined().is_empty());
        // The delta carries a record the filter refuses, a revocation and a new key.
        host.now.set(100_000);
        let delta = page(
            2,
            false,
            1,
            &[
                record_named("bad", "evil\u{0}name"),
                record_json("new", true),
            ],
            &[hash_key("revoked")],
            None,
        );
        let (_, outcome) = fetch(&mut refresher, &host, Some(200), &delta);
        assert!(
            matches!(outcome, Outcome::Applied { version: 2, .. }),
            "{outcome:?}"
        );
        let meta = read_meta(&host);
        assert!(lookup(&host, &hash_key("new"), meta.generation).is_some());
        assert!(lookup(&host, &hash_key("kept"), meta.generation).is_some());
        assert!(lookup(&host, &hash_key("revoked"), meta.generation).is_none());
        assert!(
            lookup(&host, &hash_key("bad"), meta.generation).is_none(),
            "never the old version of a quarantined record"
        );
        let quarantined = refresher.take_quarantined();
        assert_eq!(quarantined.len(), 1);
        assert_eq!(quarantined[0].id, "id_bad");
        assert_eq!(quarantined[0].error.field, "keys[0].name");
        // A long Unicode name is no quarantine at all.
        host.now.set(200_000);
        let delta = page(
            3,
            false,
            2,
            &[record_named("bad", &"🔑".repeat(128))],
            &[],
            None,
        );
        fetch(&mut refresher, &host, Some(200), &delta);
        assert!(refresher.take_quarantined().is_empty());
        let meta = read_meta(&host);
        assert_eq!(
            lookup(&host, &hash_key("bad"), meta.generation)
                .and_then(|k| k.view().map(|v| v.name.to_string())),
            Some("🔑".repeat(128))
        );
    }

    #[test]
    fn a_holder_whose_lease_expired_mid_load_never_publishes() {
        let host = FakeHost::at(10_000);
        let mut slow = Refresher::new(1, control(""), 64);
        let mut other = Refresher::new(2, control(""), 64);
        // `slow` claims and its call stalls past its lease (deadline + margin).
        assert!(slow.poll(&host).0.is_some());
        slow.dispatched(1);
        host.now.set(10_000 + 2_000 + 1_000 + LEASE_MARGIN_MS + 1);
        // `other` takes over (it does not tick `slow`, whose VM may be stuck) and loads v2.
        let (request, _) = other.poll(&host);
        assert!(request.is_some());
        other.dispatched(7);
        let fresh = page(2, true, 0, &[record_json("current", true)], &[], None);
        assert!(matches!(
            other.on_response(&host, 7, Some(200), &fresh, fresh.len()),
            Outcome::Applied { version: 2, .. }
        ));
        let published = read_meta(&host);
        // The stale answer finally reaches `slow`: nothing of it is published or written.
        let stale = page(1, true, 0, &[record_json("stale", true)], &[], None);
        let outcome = slow.on_response(&host, 1, Some(200), &stale, stale.len());
        assert!(!matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
        assert_eq!(read_meta(&host), published);
        assert!(lookup(&host, &hash_key("stale"), 0).is_none());
        // And a holder with an older token cannot write the store record at all.
        assert_eq!(
            store::update_meta(&host, published.fence - 1, StoreMeta::clone),
            Err(MetaError::Fenced)
        );
    }

    #[test]
    fn a_takeover_in_the_middle_of_a_page_write_wins() {
        // Envoy's workers run in parallel: while `slow` writes the keys of its page, its lease
        // runs out and `other` claims, loads and publishes a newer snapshot. `slow` must not
        // publish over it, and what it wrote must not count as current.
        let host = FakeHost::at(10_000);
        let mut slow = Refresher::new(1, control(""), 64);
        assert!(slow.poll(&host).0.is_some());
        slow.dispatched(1);
        host.interleave("s", |host| {
            host.now
                .set(host.now.get() + 2_000 + 1_000 + LEASE_MARGIN_MS + 1);
            let mut other = Refresher::new(2, control(""), 64);
            let (request, _) = other.poll(host);
            assert!(request.is_some(), "the expired lease can be taken over");
            other.dispatched(7);
            let fresh = page(2, true, 0, &[record_json("current", true)], &[], None);
            assert!(matches!(
                other.on_response(host, 7, Some(200), &fresh, fresh.len()),
                Outcome::Applied { version: 2, .. }
            ));
        });
        let stale = page(1, true, 0, &[record_json("stale", true)], &[], None);
        let outcome = slow.on_response(&host, 1, Some(200), &stale, stale.len());
        assert!(
            matches!(
                outcome,
                Outcome::Failed {
                    rejected: false,
                    ..
                }
            ),
            "{outcome:?}"
        );
        let meta = read_meta(&host);
        assert_eq!(meta.version, 2);
        assert!(lookup(&host, &hash_key("current"), meta.generation).is_some());
        assert!(lookup(&host, &hash_key("stale"), meta.generation).is_none());
    }

    #[test]
    fn an_aborted_full_load_stays_dead_when_the_clock_steps_back() {
        let host = FakeHost::at(1_000_000);
        let mut refresher = Refresher::new(1, control(""), 64);
        fetch(
            &mut refresher,
            &host,
            Some(200),
            &page(1, true, 0, &[record_json("kept", true)], &[], None),
        );
        // A paged full load writes its first page, then is abandoned.
        host.now.set(10_000_000_000);
        let (_, outcome) = fetch(
            &mut refresher,
            &host,
            Some(200),
            &page(2, true, 0, &[record_json("ghost", true)], &[], Some("c1")),
        );
        assert!(matches!(outcome, Outcome::NextPage(_)));
        host.now.set(10_000_000_000 + 60_000);
        let (_, abandoned) = refresher.poll(&host);
        assert!(matches!(abandoned, Some(Outcome::Failed { .. })));
        // The clock steps back below the aborted load's generation; the next full snapshot
        // (which no longer has `ghost`) must still retire what that load wrote.
        host.now.set(2_000_000_000);
        let (_, outcome) = fetch(
            &mut refresher,
            &host,
            Some(200),
            &page(3, true, 0, &[record_json("kept", true)], &[], None),
        );
        assert!(
            matches!(outcome, Outcome::Applied { version: 3, .. }),
            "{outcome:?}"
        );
        let meta = read_meta(&host);
        assert!(meta.generation > 10_000_000_000, "{meta:?}");
        assert!(lookup(&host, &hash_key("kept"), meta.generation).is_some());
        assert!(lookup(&host, &hash_key("ghost"), meta.generation).is_none());
    }

    #[test]
    fn failures_back_off_and_recover() {
        let host = FakeHost::at(10_000);
        let mut refresher = Refresher::new(1, control(""), 64);
        let (_, outcome) = fetch(&mut refresher, &host, None, b"");
        assert!(matches!(outcome, Outcome::Failed { .. }));
        assert_eq!(refresher.poll(&host).0, None, "backing off");
        host.now.set(10_000 + backoff_ms(0));
        let (_, outcome) = fetch(
            &mut refresher,
            &host,
            Some(200),
            &page(1, true, 0, &[], &[], None),
        );
        assert!(matches!(outcome, Outcome::Applied { .. }));
    }

    #[test]
    fn one_fetch_per_envoy_and_stalled_calls_are_abandoned() {
        let host = FakeHost::at(10_000);
        let mut worker_a = Refresher::new(1, control(""), 64);
        let mut worker_b = Refresher::new(2, control(""), 64);
        assert!(worker_a.poll(&host).0.is_some());
        worker_a.dispatched(5);
        assert!(worker_b.poll(&host).0.is_none(), "lease is held");
        // The call never completes: A gives up at its own deadline (timeout + 1 s) ...
        host.now.set(10_000 + 3_000);
        let (request, abandoned) = worker_a.poll(&host);
        assert!(matches!(abandoned, Some(Outcome::Failed { .. })));
        assert!(request.is_none(), "backing off after the abandoned call");
        // ... and a late answer to the abandoned call is ignored.
        assert_eq!(
            worker_a.on_response(&host, 5, Some(200), b"{}", 2),
            Outcome::Ignored
        );
        // After the backoff, either worker may take over.
        host.now.set(10_000 + 3_000 + backoff_ms(0));
        assert!(worker_b.poll(&host).0.is_some());
        worker_b.dispatched(9);
        assert_eq!(
            worker_b.on_response(&host, 8, Some(200), b"{}", 2),
            Outcome::Ignored,
            "wrong token"
        );
    }

    #[test]
    fn a_dead_holders_lease_expires() {
        let host = FakeHost::at(10_000);
        let mut dead = Refresher::new(1, control(""), 64);
        assert!(dead.poll(&host).0.is_some());
        let mut alive = Refresher::new(2, control(""), 64);
        host.now.set(10_000 + 2_000 + 1_000 + LEASE_MARGIN_MS);
        assert!(alive.poll(&host).0.is_some());
    }

    #[test]
    fn the_set_a_full_snapshot_replaced_is_swept_after_a_delay() {
        let host = FakeHost::at(10_000);
        let mut refresher = Refresher::new(1, control(""), 64);
        let keys: Vec<String> = (0..200)
            .map(|i| record_json(&format!("k{i}"), true))
            .collect();
        fetch(
            &mut refresher,
            &host,
            Some(200),
            &page(1, true, 0, &keys, &[], None),
        );
        host.now.set(100_000);
        let next = page(2, true, 0, &[record_json("k0", true)], &[], None);
        fetch(&mut refresher, &host, Some(200), &next);
        let generation = read_meta(&host).generation;
        let with_both_sets = host.value_bytes();
        // Not before the delay: a request may still hold the old view.
        refresher.poll(&host);
        assert_eq!(host.value_bytes(), with_both_sets);
        for _ in 0..(shard::SHARD_COUNT / SWEEP_SHARDS_PER_TICK) {
            host.now.set(host.now.get() + SWEEP_DELAY_MS);
            refresher.poll(&host);
            refresher.fetch = None;
        }
        assert!(refresher.sweep.is_none());
        assert!(
            host.value_bytes() < with_both_sets / 10,
            "{}",
            host.value_bytes()
        );
        assert!(lookup(&host, &hash_key("k0"), generation).is_some());
        assert!(lookup(&host, &hash_key("k1"), generation).is_none());
    }

    #[test]
    fn paged_full_snapshot_switches_generation_at_the_end() {
        let host = FakeHost::at(10_000);
        let mut refresher = Refresher::new(1, control(""), 64);
        fetch(
            &mut refresher,
            &host,
            Some(200),
            &page(1, true, 0, &[record_json("old", true)], &[], None),
        );
        let generation = read_meta(&host).generation;
        host.now.set(100_000);
        let (_, outcome) = fetch(
            &mut refresher,
            &host,
            Some(200),
            &page(5, true, 0, &[record_json("a", true)], &[], Some("c1")),
        );
        let Outcome::NextPage(next) = outcome else {
            panic!("expected another page: {outcome:?}")
        };
        assert_eq!(
            next.path,
            "/v1/snapshot?limit=10000&since=1&epoch=E&cursor=c1"
        );
        assert!(!next.headers.iter().any(|(n, _)| n == "if-none-match"));
        // Mid-load: the old snapshot serves whole, the new one is not live yet.
        assert!(lookup(&host, &hash_key("old"), generation).is_some());
        assert!(lookup(&host, &hash_key("a"), generation).is_none());
        refresher.dispatched(2);
        let last = page(6, true, 0, &[record_json("b", true)], &[], None);
        let outcome = refresher.on_response(&host, 2, Some(200), &last, last.len());
        assert_eq!(
            outcome,
            Outcome::Applied {
                version: 5,
                keys: 2,
                full: true
            }
        );
        let meta = read_meta(&host);
        assert!(lookup(&host, &hash_key("old"), meta.generation).is_none());
        assert!(lookup(&host, &hash_key("b"), meta.generation).is_some());
    }

    #[test]
    fn long_poll_asks_to_wait_and_polls_again_at_once() {
        let host = FakeHost::at(10_000);
        let mut refresher = Refresher::new(1, control(r#","long_poll_wait":"30s""#), 64);
        let (first, _) = fetch(
            &mut refresher,
            &host,
            Some(200),
            &page(1, true, 0, &[], &[], None),
        );
        assert!(
            !first.path.contains("wait="),
            "no long poll before the first snapshot"
        );
        let (request, _) = fetch(&mut refresher, &host, Some(304), b"");
        assert_eq!(
            request.path,
            "/v1/snapshot?limit=10000&since=1&epoch=E&wait=30"
        );
        assert_eq!(request.timeout, Duration::from_secs(32));
        assert!(refresher.poll(&host).0.is_some(), "due again immediately");
    }
}
