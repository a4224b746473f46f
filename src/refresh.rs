//! Pulling the snapshot from the control service.
//!
//! Every worker VM ticks, but only one fetch runs per Envoy at a time: the worker that wins a
//! compare-and-swap on the shared `keygate.sync` lease fetches and writes the store for all.
//! The lease carries its own deadline, so a worker that dies or whose call never completes
//! (Envoy can queue a call to a cluster with no healthy host without firing its timeout) is
//! replaced on a later tick. Locally, the holder also enforces its own deadline and ignores any
//! response whose token is not the one it waits for.

use std::time::Duration;

use crate::config::ControlConfig;
use crate::host::Host;
use crate::keys::validate_page;
use crate::lease;
use crate::limiter;
use crate::snapshot::Snapshot;
use crate::store::{self, StoreMeta, STORE_FORMAT};

pub const SYNC_KEY: &str = "keygate.sync";
/// Largest snapshot page we accept; bigger answers are rejected unread.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const LEASE_MARGIN_MS: u64 = 2_000;

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
        key_change: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fetch {
    token: u32,
    deadline_ms: u64,
    /// What we asked for: version and epoch we have.
    since: Option<(u64, String)>,
    mode: Mode,
    first_version: u64,
    epoch: String,
    cursor: Option<String>,
    keys_written: u64,
}

/// Per-VM refresh driver.
#[derive(Debug)]
pub struct Refresher {
    /// Random per-VM identity for the lease.
    me: u64,
    config: ControlConfig,
    /// Rate-limit counter slots to create before a snapshot is first served.
    rate_limit_slots: u64,
    fetch: Option<Fetch>,
}

impl Refresher {
    pub fn new(me: u64, config: ControlConfig, rate_limit_slots: u64) -> Refresher {
        Refresher {
            me,
            config,
            rate_limit_slots,
            fetch: None,
        }
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
            ("accept".to_string(), "application/json".to_string()),
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
        if !lease::try_claim(host, SYNC_KEY, self.me, now, deadline + LEASE_MARGIN_MS) {
            return (None, abandoned);
        }
        let request = self.build_request(since.as_ref(), None, long_poll);
        self.fetch = Some(Fetch {
            token: 0,
            deadline_ms: deadline,
            since,
            mode: Mode::Unknown,
            first_version: 0,
            epoch: String::new(),
            cursor: None,
            keys_written: 0,
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

    fn still_holder(&self, host: &dyn Host) -> bool {
        lease::held_by(host, SYNC_KEY, self.me)
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
        store::update_meta(host, |meta| StoreMeta {
            last_success_ms: now,
            ..meta.clone()
        })
        .map_err(|e| (format!("could not record refresh: {e:?}"), false))?;
        self.fetch = None;
        self.release(host, false);
        Ok(Outcome::Unchanged)
    }

    fn apply_page(&mut self, host: &dyn Host, body: &[u8]) -> Result<Outcome, (String, bool)> {
        let snapshot =
            Snapshot::from_slice(body).map_err(|e| (format!("snapshot rejected: {e}"), true))?;
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
                Mode::Full {
                    generation: now.max(meta.generation + 1),
                }
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
                    key_change: 0,
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
            Mode::Full { generation } | Mode::Delta { generation, .. } => generation,
            Mode::Unknown => meta.generation,
        };
        let page = validate_page(&snapshot, generation)
            .map_err(|e| (format!("snapshot rejected: {e}"), true))?;
        let is_delta = matches!(fetch.mode, Mode::Delta { .. });
        let change = store::write_page(host, &page, meta.generation, is_delta)
            .map_err(|e| (format!("could not write keys to shared data: {e:?}"), false))?;
        fetch.keys_written += page.upserts.len() as u64;
        if let Mode::Delta { key_change, .. } = &mut fetch.mode {
            *key_change += change;
        }
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
        let (generation, keys, full) = match fetch.mode {
            Mode::Full { generation } => (generation, fetch.keys_written, true),
            Mode::Delta {
                generation,
                key_change,
            } => (
                generation,
                (meta.keys as i64 + key_change).max(0) as u64,
                false,
            ),
            Mode::Unknown => (meta.generation, meta.keys, false),
        };
        // The lease holder is the only writer that may create entries, so it creates the
        // rate-limit slots before any request can count in them (see limiter.rs).
        limiter::ensure_slots(host, self.rate_limit_slots)
            .map_err(|e| (format!("could not create rate-limit slots: {e:?}"), false))?;
        let version = fetch.first_version;
        let epoch = fetch.epoch;
        store::update_meta(host, |_| StoreMeta {
            generation,
            version,
            epoch: epoch.clone(),
            keys,
            last_success_ms: now,
            format: STORE_FORMAT,
        })
        .map_err(|e| (format!("could not record snapshot: {e:?}"), false))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::host::FakeHost;
    use crate::keys::hash_key;
    use crate::lease::backoff_ms;
    use crate::store::{lookup, read_meta};

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
        store::update_meta(&host, |_| StoreMeta {
            generation: 5,
            version: 9,
            epoch: "E".into(),
            keys: 1,
            last_success_ms: 999_000,
            format: 0,
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
            page(2, true, 0, &[record_json("x", true), record_json("x", true)], &[], None),
            br#"{"version":2,"full":true,"keys":[{"id":"a","hash":"zz","prefix":"p","name":"n","environment":"live","active":true}]}"#.to_vec(),
            br#"{"version":2,"full":true,"keys":[{"id":"a","hash":"0000000000000000000000000000000000000000000000000000000000000000","prefix":"p","name":"n","environment":"live","active":true,"limits":{"per_minute":-1}}]}"#.to_vec(),
            page(2, false, 99, &[], &[], None),
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
        // Mid-load: old keys and new keys both serve.
        assert!(lookup(&host, &hash_key("old"), generation).is_some());
        assert!(lookup(&host, &hash_key("a"), generation).is_some());
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
