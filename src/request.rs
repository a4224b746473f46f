//! One request's flow, over the `Host` trait so that it runs on the host in tests: strip
//! spoofed identity headers, find the credential, check the store is usable, decide, count the
//! request against its limits, then forward it with the key's identity (credentials removed) or
//! answer it with the documented error; give the in-flight place back when the stream ends.
//! `proxy/http.rs` is the proxy-wasm context that calls into it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use log::debug;

use crate::config::{Config, FailMode};
use crate::gathered::Gathered;
use crate::headers::Headers;
use crate::host::Host;
use crate::limits::counters::{self, Admission, KeyTag};
use crate::limits::credits::{self, Credits};
use crate::limits::headers::{PolicyCache, RateHeaders};
use crate::limits::window::{self, Refusal};
use crate::metrics::Metrics;
use crate::policy::decision::{self, Denial, RequestFacts};
use crate::policy::extract::{self, Credential, Sources};
use crate::policy::net;
use crate::policy::token::{self, TokenClaims};
use crate::store::{self, recent::RecentKeys, record::KeyView, StoreView};
use crate::sync::outcome;
use keygate_contract::key_format;
use keygate_contract::key_hash::{digest_key, Digest};
use keygate_contract::usage::{
    clip, UsageEvent, MAX_EVENT_FIELD_BYTES, MAX_EVENT_PATH_BYTES, UPSTREAM_CLASSES,
};

/// Every request header the filter owns starts with this; a client's are removed first.
pub const IDENTITY_PREFIX: &str = "x-keygate-";
pub const FAIL_OPEN_HEADER: &str = "x-keygate-fail-open";
/// Filter state / property the key id is exposed under (`%FILTER_STATE(wasm.keygate_key_id:PLAIN)%`).
pub const KEY_ID_PROPERTY: &str = "keygate_key_id";

/// What every request context of one worker VM shares.
pub struct Worker {
    pub config: Config,
    pub metrics: Metrics,
    /// What the requests gather for the background jobs (tally, touched slots, slot count).
    pub gathered: Arc<Gathered>,
    /// The store view this worker read last, and when (proxy clock ms): see `store_view`.
    pub view: Cell<Option<(StoreView, u64)>>,
    /// `RateLimit-Policy` fields by limits, so a request does not rebuild its plan's.
    pub policies: PolicyCache,
    /// Requests of busy keys counted ahead in shared data (`limits/credits.rs`).
    pub credits: RefCell<Credits>,
    /// Records of keys found in the last `RECENT_KEY_TTL_MS` (`store/recent.rs`).
    pub recent: RefCell<RecentKeys>,
}

impl Worker {
    /// A worker with nothing counted, seen or cached yet.
    pub fn new(config: Config, metrics: Metrics) -> Worker {
        Worker {
            config,
            metrics,
            gathered: Arc::default(),
            view: Cell::new(None),
            policies: PolicyCache::default(),
            credits: RefCell::default(),
            recent: RefCell::new(RecentKeys::default()),
        }
    }
}

/// How long a worker serves from the store view it read before reading it again. Deltas
/// rewrite the live shards in place and are not held back by it; only the switch to a new full
/// snapshot, and a snapshot going stale, reach a worker up to this much later. It saves one
/// shared-data read, under Envoy's process-wide lock, per request.
pub const VIEW_TTL_MS: u64 = 100;

/// How long a worker serves a key it found from its recent keys (`store/recent.rs`) before
/// reading the key's shard again. So a change to a key (a revocation, new scopes) reaches a
/// worker that has just served it up to this much later, next to the 5–20 ms a change takes to
/// reach the proxy by long polling. Keys not found are read every time, so a new key works as
/// soon as it is written. A busy key still costs one shard read per this many ms instead of one
/// per request: the read was 1.3 µs of an allowed request (docs/benchmarks.md, round 3).
pub const RECENT_KEY_TTL_MS: u64 = 10;

/// What to do with the request after its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it on upstream.
    Continue,
    /// It was answered locally; stop.
    Stop,
}

pub struct RequestFilter<H: Host> {
    context_id: u32,
    worker: Rc<Worker>,
    host: H,
    /// In-flight place to give back when the request ends: (slot, key, in-flight bucket).
    in_flight: Option<(u64, KeyTag, u64)>,
    /// Rate-limit headers for the response.
    response_headers: Option<RateHeaders>,
    replied_locally: bool,
    /// A gRPC call (`content-type: application/grpc…`): denials are gRPC answers.
    grpc: bool,
    /// The key of an allowed request and when it started (proxy clock ms), to count what the
    /// upstream did and how long it took when the stream ends.
    served: Option<(Arc<str>, u64)>,
    /// The response's status (read with its headers) and whether it reached its end: a stream
    /// that ends before is `none` (the client hung up, the upstream reset).
    response_status: Option<u32>,
    response_complete: bool,
}

/// What an event says about the request, gathered only when the event is kept.
struct EventFacts<'a> {
    method: &'a str,
    path: &'a str,
    request_id: Option<&'a str>,
    client_ip: Option<std::net::IpAddr>,
}

impl EventFacts<'_> {
    fn event(&self, at_ms: u64, outcome: &str, status: u32) -> UsageEvent {
        UsageEvent {
            at_ms,
            outcome: outcome.to_string(),
            status,
            method: clip(self.method, MAX_EVENT_FIELD_BYTES).to_string(),
            path: clip(
                crate::policy::routes::path_without_query(self.path),
                MAX_EVENT_PATH_BYTES,
            )
            .to_string(),
            client_ip: self
                .client_ip
                .map(|ip| keygate_contract::fields::canonical_ip(ip).to_string()),
            request_id: self
                .request_id
                .map(|id| clip(id, MAX_EVENT_FIELD_BYTES).to_string()),
        }
    }
}

/// Keeps a header value printable so it can be echoed safely (request ids).
fn printable(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 200 && !s.chars().any(char::is_control))
}

impl<H: Host> RequestFilter<H> {
    pub fn new(context_id: u32, worker: Rc<Worker>, host: H) -> RequestFilter<H> {
        RequestFilter {
            context_id,
            worker,
            host,
            in_flight: None,
            response_headers: None,
            replied_locally: false,
            grpc: false,
            served: None,
            response_status: None,
            response_complete: false,
        }
    }

    /// The host this request runs on.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The peer's address: a property read, one of the dearer host calls (about 5 µs).
    fn peer(&self) -> Option<std::net::IpAddr> {
        self.host
            .property(&["source", "address"])
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|text| net::parse_address(&text))
    }

    /// The client's address: the peer, or the `x-forwarded-for` entry the trusted hops name.
    fn client_ip(&self, headers: &Headers) -> Option<std::net::IpAddr> {
        net::client_ip(
            self.peer(),
            headers.get("x-forwarded-for"),
            self.worker.config.xff_trusted_hops,
        )
    }

    /// The client's address in the log phase: the peer, and only when trusted hops ask for it
    /// the forwarded-for header (read, with the rest of the map, as the decision reads it).
    fn client_ip_on_log(&self) -> Option<std::net::IpAddr> {
        if self.worker.config.xff_trusted_hops == 0 {
            return self.peer();
        }
        self.client_ip(&self.host.request_headers())
    }

    /// Counts a denial of a known key (with an event, while the key's events have room).
    fn count_denial(
        &self,
        key_id: &str,
        facts: &RequestFacts<'_>,
        headers: &Headers,
        request_id: Option<&str>,
        denial: &Denial,
        now_ms: u64,
    ) {
        // As in `finish`, the tally's lock is not held across the host call for the address.
        let (weight, wants_event) = {
            let mut tally = self.worker.gathered.tally();
            tally.record(key_id, facts.now, facts.route, Some(denial.code));
            // Like allowed requests', a denial's address is sampled unless the decision read
            // it already or its event names it: a flood of 429s would otherwise pay a
            // property read each.
            let weight = tally.address_weight(key_id, facts.now);
            (weight, tally.wants_event(key_id, facts.now))
        };
        let client_ip = match (facts.client_ip, weight.is_some() || wants_event) {
            (Some(ip), _) => Some(ip),
            (None, true) => self.client_ip(headers),
            (None, false) => None,
        };
        let mut tally = self.worker.gathered.tally();
        if let Some(ip) = client_ip {
            tally.saw(key_id, facts.now, ip, weight.unwrap_or(1));
        }
        if wants_event {
            let event = EventFacts {
                method: facts.method,
                path: facts.path,
                request_id,
                client_ip,
            }
            .event(now_ms, denial.code.as_str(), denial.code.status());
            tally.event(key_id, facts.now, event);
        }
    }

    fn deny(&mut self, denial: &Denial, request_id: Option<&str>) -> Verdict {
        self.replied_locally = true;
        self.worker.metrics.denied(denial.code);
        debug!(
            "#{} denied {} {}",
            self.context_id,
            denial.code.status(),
            denial.code.as_str()
        );
        let reply = if self.grpc {
            decision::render_grpc(denial, &self.worker.config.realm, request_id)
        } else {
            decision::render(denial, &self.worker.config.realm, request_id)
        };
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        self.host.send_reply(
            reply.status,
            &headers,
            reply.body.as_bytes(),
            reply.grpc_status,
        );
        Verdict::Stop
    }

    /// Removes the credential headers the request carries (each removal is a host call that
    /// also clears Envoy's route cache, so absent ones are not removed).
    /// (A query-parameter key left the path before the decision: `strip_query_key`.)
    fn strip_credentials(&self, headers: &Headers) {
        if self.worker.config.forward_credentials {
            return;
        }
        if headers.contains("authorization") {
            self.host.set_request_header("authorization", None);
        }
        if let Some(name) = self
            .worker
            .config
            .key_header
            .as_deref()
            .filter(|name| headers.contains(name))
        {
            self.host.set_request_header(name, None);
        }
    }

    /// Takes the query-parameter key (when that source is on) out of `:path` before anything
    /// is decided, valid or not: a refused request is logged with its path as well, and no key
    /// may reach a log. One host call, only for a path that carries the parameter.
    fn strip_query_key(&self, path: &str) {
        if self.worker.config.forward_credentials {
            return;
        }
        let Some(param) = self.worker.config.key_query_param.as_deref() else {
            return;
        };
        if !path.contains('?') {
            return;
        }
        let stripped = extract::strip_query_param(path, param);
        if stripped != path {
            self.host.set_request_header(":path", Some(&stripped));
        }
    }

    /// Writes the key's identity headers. When the client sent no `x-keygate-*` header they are
    /// added, not replaced: Envoy then skips looking for the name. After a spoofed one (removed
    /// already) they replace, so that a removal that failed could not leave the client's value
    /// first.
    /// A request made with an access token (`token_scope`: its scopes, `None` for the key's own)
    /// carries the scopes it may use and `x-keygate-credential: access-token`.
    fn forward_identity(&self, key: &KeyView<'_>, spoofed: bool, token: Option<Option<&str>>) {
        let add = |name, value: &str| {
            if spoofed {
                self.host.set_request_header(name, Some(value));
            } else {
                self.host.add_request_header(name, value);
            }
        };
        add("x-keygate-key-id", key.id);
        // Each header written is a host call: a key without a name or team gets none (any the
        // client sent was removed). Scopes are always written: empty means full access.
        if !key.name.is_empty() {
            add("x-keygate-key-name", key.name);
        }
        if !key.team.is_empty() {
            add("x-keygate-team", key.team);
        }
        add("x-keygate-environment", key.environment);
        match token {
            Some(Some(claim)) => add(
                "x-keygate-scopes",
                &token::narrowed_scopes(key.scopes, claim),
            ),
            _ => add("x-keygate-scopes", key.scopes),
        }
        if token.is_some() {
            add("x-keygate-credential", "access-token");
        }
        if self.worker.config.key_id_property {
            self.host
                .write_property(&[KEY_ID_PROPERTY], key.id.as_bytes());
        }
    }

    /// Quota, then rate and concurrency limits, counted in this Envoy's shared counters.
    fn limit(&mut self, key: &KeyView<'_>, digest: &Digest, now_ms: u64) -> Result<(), Denial> {
        let now = (now_ms / 1000) as i64;
        if let Some(until) = key.quota_exceeded_until.filter(|until| *until > now) {
            return Err(Denial::over_quota(until, now));
        }
        if !window::has_limits(&key.limits) {
            return Ok(());
        }
        let config = &self.worker.config.rate_limits;
        let capacity = match self.worker.gathered.slots() {
            0 => counters::slot_count(&self.host),
            known => known,
        };
        let key_tag = counters::owner_and_seed(digest);
        let headers = |usage: &window::Usage| {
            if config.headers {
                RateHeaders::new(usage, &self.worker.policies, &config.windows)
            } else {
                None
            }
        };
        let refusal_headers =
            |usage: &window::Usage| headers(usage).map(|h| h.to_vec()).unwrap_or_default();
        let table = credits::Table {
            host: &self.host,
            windows: &config.windows,
            capacity,
            now_ms,
        };
        let admission = credits::admit(
            &self.worker.credits,
            &table,
            key_tag,
            &key.limits,
            &mut |slot| {
                self.worker.gathered.touched().insert(slot);
            },
        );
        match admission {
            Admission::Admitted {
                slot,
                in_flight,
                usage,
                granted,
            } => {
                self.worker.metrics.counted_ahead(granted.saturating_sub(1));
                if let Some(bucket) = in_flight {
                    self.in_flight = Some((slot, key_tag, bucket));
                }
                if window::window_limits(&key.limits)
                    .iter()
                    .any(Option::is_some)
                {
                    self.worker.gathered.touched().insert(slot);
                }
                self.response_headers = headers(&usage);
                Ok(())
            }
            Admission::Credited { usage } => {
                self.response_headers = headers(&usage);
                Ok(())
            }
            Admission::Refused {
                refusal:
                    Refusal::Rate {
                        retry_after_ms,
                        by_fleet,
                    },
                usage,
            } => {
                if by_fleet {
                    self.worker.metrics.refused_by_fleet(&self.host);
                }
                Err(Denial::rate_limited(
                    window::ceil_seconds(retry_after_ms),
                    refusal_headers(&usage),
                ))
            }
            Admission::Refused {
                refusal: Refusal::Concurrency,
                usage,
            } => Err(Denial::too_many_in_flight(refusal_headers(&usage))),
            Admission::NoSlot => {
                self.worker.metrics.uncounted(&self.host);
                Ok(())
            }
            Admission::Contended => {
                self.worker.metrics.uncounted(&self.host);
                Err(Denial::rate_limited(1, Vec::new()))
            }
        }
    }

    /// The store view, re-read at most every `VIEW_TTL_MS` (and on every request until a
    /// snapshot is loaded, or when the clock went back).
    fn store_view(&self, now_ms: u64) -> StoreView {
        if let Some((view, read_at)) = self.worker.view.get() {
            if now_ms >= read_at && now_ms - read_at < VIEW_TTL_MS {
                return view;
            }
        }
        let view = store::read_view(&self.host);
        self.worker
            .view
            .set((view.last_success_ms > 0).then_some((view, now_ms)));
        view
    }

    /// The request's headers have arrived: decide.
    pub fn on_request_headers(&mut self) -> Verdict {
        let headers = self.host.request_headers();
        // A scan of the map already in the VM; a host call only for a header a client spoofed.
        let mut spoofed = false;
        for (name, _) in headers.iter_bytes() {
            if name.starts_with(IDENTITY_PREFIX.as_bytes()) {
                spoofed = true;
                if let Ok(name) = std::str::from_utf8(name) {
                    self.host.set_request_header(name, None);
                }
            }
        }
        let request_id = headers.get("x-request-id").and_then(printable);
        self.grpc = decision::is_grpc(headers.get("content-type"));
        let path = headers
            .get(":path")
            .and_then(|p| std::str::from_utf8(p).ok())
            .unwrap_or("/");
        let method = headers
            .get(":method")
            .and_then(|m| std::str::from_utf8(m).ok())
            .unwrap_or("");
        let now_ms = self.host.now_ms();
        self.strip_query_key(path);

        let credential = extract::extract(
            headers.iter(),
            Sources {
                header: self.worker.config.key_header.as_deref(),
                query_param: self.worker.config.key_query_param.as_deref(),
            },
        );

        // No key: a token `jwt_authn` verified, if tokens are on (one host call per request
        // without a key; requests with a key never look).
        let claims = match (&credential, &self.worker.config.oauth) {
            (Credential::Missing, Some(source)) => token::read(&source.issuer, |claim| {
                self.host.property(&source.claim_path(claim))
            }),
            _ => TokenClaims::Absent,
        };
        let credential = match &claims {
            TokenClaims::Absent => credential,
            TokenClaims::Verified(token) => Credential::Token(token),
            TokenClaims::Unusable => Credential::UnusableToken,
        };

        let view = self.store_view(now_ms);
        if !view.usable(now_ms, self.worker.config.max_staleness) {
            return match self.worker.config.fail_mode {
                FailMode::Closed => self.deny(&Denial::unavailable(), request_id),
                FailMode::Open => {
                    self.worker.metrics.fail_open(&self.host);
                    self.strip_credentials(&headers);
                    self.host.set_request_header(FAIL_OPEN_HEADER, Some("true"));
                    Verdict::Continue
                }
            };
        }

        // A key of the checksummed format whose checksum fails is a typo, a truncated paste or
        // a forgery: refused as unknown without hashing it or looking it up.
        let digest = match credential {
            Credential::Present { key, .. } if key_format::fails_checksum(key) => {
                self.worker.metrics.checksum_failed(&self.host);
                None
            }
            // A refused token left in the header is answered as one, without a lookup.
            Credential::Present { key, .. } if token::looks_like_jwt(key) => None,
            Credential::Present { key, .. } => Some(digest_key(key)),
            Credential::Token(token) => Some(token.key_digest),
            _ => None,
        };
        let found = digest.as_ref().and_then(|d| {
            store::lookup_recent(
                &self.host,
                d,
                &view,
                &self.worker.recent,
                now_ms,
                RECENT_KEY_TTL_MS,
            )
        });
        let record = found.as_ref().and_then(store::Found::view);
        // The client address is one of the dearer host calls; only an allowlist needs it.
        let needs_client_ip = record.as_ref().is_some_and(KeyView::has_allowlist);
        let client_ip = if needs_client_ip {
            self.client_ip(&headers)
        } else {
            None
        };
        let facts = RequestFacts {
            method,
            path,
            client_ip,
            now: (now_ms / 1000) as i64,
            route: self.worker.config.routes.route(method, path),
        };
        let key = match decision::decide(&self.worker.config, &credential, record.as_ref(), &facts)
        {
            Ok(key) => key,
            Err(denial) => {
                if let Some(record) = &record {
                    self.count_denial(record.id, &facts, &headers, request_id, &denial, now_ms);
                }
                return self.deny(&denial, request_id);
            }
        };
        if let Err(denial) = self.limit(key, &digest.unwrap_or_default(), now_ms) {
            self.count_denial(key.id, &facts, &headers, request_id, &denial, now_ms);
            return self.deny(&denial, request_id);
        }
        self.strip_credentials(&headers);
        let token_scope = match &credential {
            Credential::Token(token) => Some(token.scope.as_deref()),
            _ => None,
        };
        self.forward_identity(key, spoofed, token_scope);
        self.worker.metrics.allowed();
        let counted = self
            .worker
            .gathered
            .tally()
            .record(key.id, facts.now, facts.route, None);
        // What became of it is counted in the log phase, unless the detail is off.
        self.served = counted
            .filter(|_| self.worker.config.usage.response_detail)
            .map(|id| (id, now_ms));
        debug!("#{} allowed key {}", self.context_id, key.id);
        Verdict::Continue
    }

    /// The upstream's response headers: add the rate-limit headers of an admitted request, and
    /// note its status for usage (`end_of_stream`: the response has no body).
    pub fn on_response_headers(&mut self, end_of_stream: bool) {
        if self.replied_locally {
            return;
        }
        if let Some(headers) = &self.response_headers {
            headers.write(|name, value| self.host.set_response_header(name, value));
        }
        if self.served.is_some() {
            self.response_status = self.host.response_status();
            self.response_complete = end_of_stream;
        }
    }

    /// Response body or trailers went through: the response is complete at its end of stream.
    pub fn on_response_data(&mut self, end_of_stream: bool) {
        self.response_complete |= end_of_stream;
    }

    /// The stream ended (Envoy's log phase): give back the in-flight place, if one was taken,
    /// and count what the upstream did with an allowed request and how long it took.
    pub fn on_stream_end(&mut self) {
        if self.in_flight.is_none() && self.served.is_none() {
            return;
        }
        let now_ms = self.host.now_ms();
        if let Some((slot, key, bucket)) = self.in_flight.take() {
            let windows = &self.worker.config.rate_limits.windows;
            counters::release(&self.host, slot, key, bucket, windows, now_ms);
        }
        if let Some((key_id, started_ms)) = self.served.take() {
            self.finish(&key_id, started_ms, now_ms);
        }
    }

    fn finish(&self, key_id: &str, started_ms: u64, now_ms: u64) {
        // A property read costs about 5 µs of Envoy CPU (docs/usage.md): the flags, which tell
        // Envoy's own 503/504 (no healthy upstream, timeout, reset) from the upstream's, are
        // read only for a 5xx; a response that never completed is `none` without them.
        let status = self
            .response_status
            .filter(|_| self.response_complete)
            .map(u64::from);
        let flags = match status {
            Some(500..) => {
                outcome::property_int(self.host.property(&["response", "flags"]).as_deref())
            }
            _ => None,
        };
        let class = outcome::class_index(status, flags.unwrap_or(0));
        let started = (started_ms / 1000) as i64;
        let failed = outcome::is_failure(class);
        // The tally's lock is not held across host calls (the native build's background thread
        // takes the tally under it): what needs the host is decided, read, then written.
        let (weight, wants_event) = {
            let mut tally = self.worker.gathered.tally();
            tally.finish(key_id, started, class, now_ms.saturating_sub(started_ms));
            // Addresses are sampled (a property read each): `Tally::address_weight`.
            let weight = tally.address_weight(key_id, started);
            (weight, failed && tally.wants_event(key_id, started))
        };
        // An event names its address, so a failure's is read whatever the sampling says.
        let client_ip = match (weight, failed) {
            (None, false) => None,
            _ => self.client_ip_on_log(),
        };
        if let (Some(ip), Some(weight)) = (client_ip, weight) {
            self.worker
                .gathered
                .tally()
                .saw(key_id, started, ip, weight);
        }
        if wants_event {
            let headers = self.host.request_headers();
            let text = |name| headers.get(name).and_then(|v| std::str::from_utf8(v).ok());
            let facts = EventFacts {
                method: text(":method").unwrap_or(""),
                path: text(":path").unwrap_or("/"),
                request_id: headers.get("x-request-id").and_then(printable),
                client_ip,
            };
            let status = self.response_status.unwrap_or(0);
            let outcome = UPSTREAM_CLASSES.get(class).copied().unwrap_or("none");
            let event = facts.event(started_ms, outcome, status);
            self.worker.gathered.tally().event(key_id, started, event);
        }
    }
}
