//! The root context: configuration, the tick that drives snapshot refresh and usage reports,
//! and creation of per-request contexts. One per worker VM.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::Duration;

use log::{debug, error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use crate::config::Config;
use crate::host::Host;
use crate::limits::counters;
use crate::metrics::Metrics;
use crate::proxy::abi;
use crate::proxy::host::ProxyHost;
use crate::proxy::host::ProxyQueue;
use crate::request::{RequestFilter, Worker};
use crate::store;
use crate::sync::fleet::{self, FleetCall, FleetOutcome, FleetSync};
use crate::sync::refresh::{CallRequest, Outcome, Refresher, MAX_BODY_BYTES};
use crate::sync::tally::Tally;
use crate::sync::usage::{ReportOutcome, Reporter, UsageCall, QUEUE_NAME};

/// The background jobs of a configured VM.
struct Jobs {
    refresher: Refresher,
    reporter: Option<(Reporter, ProxyQueue)>,
    fleet: Option<(FleetSync, ProxyQueue)>,
}

pub struct KeygateRoot {
    context_id: u32,
    worker: Option<Rc<Worker>>,
    jobs: Option<Jobs>,
    /// The tick period to settle on after the first tick (see `FIRST_TICK`).
    tick: Option<Duration>,
}

/// The first tick comes this soon after configuration, so the first snapshot is fetched at
/// once instead of up to a whole tick period (1 s) after Envoy starts; later ticks use the
/// configured period.
const FIRST_TICK: Duration = Duration::from_millis(10);

/// Random identity of this VM for the leases; std's RandomState draws its keys from WASI
/// `random_get`, which Envoy provides.
fn random_id() -> u64 {
    RandomState::new().hash_one(0xC0FFEE_u64) | 1
}

fn status_of_call_response() -> Option<u32> {
    abi::get_header_map(MapType::HttpCallResponseHeaders)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == ":status")
        .and_then(|(_, value)| std::str::from_utf8(&value).ok()?.parse().ok())
}

impl KeygateRoot {
    pub fn new(context_id: u32) -> KeygateRoot {
        KeygateRoot {
            context_id,
            worker: None,
            jobs: None,
            tick: None,
        }
    }

    fn publish_store_gauges(&self, worker: &Worker) {
        let meta = store::read_meta(&ProxyHost);
        let age_seconds = if meta.loaded() {
            ProxyHost.now_ms().saturating_sub(meta.last_success_ms) / 1000
        } else {
            0
        };
        worker
            .metrics
            .store(&ProxyHost, meta.keys, meta.version, age_seconds);
        worker.slots.set(counters::slot_count(&ProxyHost));
        if worker.config.rate_limits.fleet {
            worker
                .metrics
                .fleet_remote_age(&ProxyHost, fleet::remote_age_seconds(&ProxyHost));
        }
    }

    fn call(
        config: &Config,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, String> {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        abi::dispatch_http_call(&config.control.cluster, &headers, body, timeout).map_err(
            |status| {
                format!(
                    "could not call cluster {:?} ({status:?}); is it defined in the Envoy config?",
                    config.control.cluster
                )
            },
        )
    }

    fn dispatch_snapshot(&mut self, request: CallRequest) {
        let (Some(worker), Some(jobs)) = (&self.worker, &mut self.jobs) else {
            return;
        };
        match Self::call(&worker.config, &request.headers, None, request.timeout) {
            Ok(token) => {
                debug!(
                    "#{} snapshot request {} dispatched as call {token}",
                    self.context_id, request.path
                );
                jobs.refresher.dispatched(token);
            }
            Err(reason) => {
                let outcome = jobs.refresher.dispatch_failed(&ProxyHost, reason);
                self.report_refresh(&outcome);
            }
        }
    }

    fn dispatch_usage(&mut self, call: UsageCall) {
        let (Some(worker), Some(jobs)) = (&self.worker, &mut self.jobs) else {
            return;
        };
        let Some((reporter, queue)) = &mut jobs.reporter else {
            return;
        };
        let config = &worker.config;
        let headers = [
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), config.usage.path.clone()),
            (":authority".to_string(), config.control.authority.clone()),
            (
                "authorization".to_string(),
                format!("Bearer {}", config.control.token),
            ),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        match Self::call(config, &headers, Some(&call.body), call.timeout) {
            Ok(token) => reporter.dispatched(token),
            Err(reason) => {
                let outcome = reporter.dispatch_failed(&ProxyHost, queue, reason);
                self.report_usage(&outcome);
            }
        }
    }

    fn dispatch_fleet(&mut self, call: FleetCall) {
        let (Some(worker), Some(jobs)) = (&self.worker, &mut self.jobs) else {
            return;
        };
        let Some((sync, queue)) = &mut jobs.fleet else {
            return;
        };
        let config = &worker.config;
        let headers = [
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), config.rate_limits.sync_path.clone()),
            (":authority".to_string(), config.control.authority.clone()),
            (
                "authorization".to_string(),
                format!("Bearer {}", config.control.token),
            ),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        match Self::call(config, &headers, Some(&call.body), call.timeout) {
            Ok(token) => sync.dispatched(token),
            Err(reason) => {
                let outcome = sync.dispatch_failed(&ProxyHost, queue, reason);
                self.report_fleet(&outcome);
            }
        }
    }

    fn poll_fleet(&mut self) {
        let (Some(worker), Some(jobs)) = (&self.worker, &mut self.jobs) else {
            return;
        };
        let Some((sync, queue)) = &mut jobs.fleet else {
            return;
        };
        let (call, outcome) = sync.poll(
            &ProxyHost,
            queue,
            &mut worker.touched.borrow_mut(),
            &worker.config.rate_limits.windows,
        );
        if let Some(outcome) = outcome {
            self.report_fleet(&outcome);
        }
        if let Some(call) = call {
            self.dispatch_fleet(call);
        }
    }

    fn report_fleet(&self, outcome: &FleetOutcome) {
        if let Some(worker) = &self.worker {
            match outcome {
                FleetOutcome::Synced { keys_sent, .. } => {
                    worker
                        .metrics
                        .fleet_sync(&ProxyHost, Some(*keys_sent as u64));
                    worker.metrics.fleet_remote_age(&ProxyHost, 0);
                }
                FleetOutcome::Failed { .. } => worker.metrics.fleet_sync(&ProxyHost, None),
                FleetOutcome::Ignored => {}
            }
        }
        match outcome {
            FleetOutcome::Synced {
                keys_sent,
                keys_updated,
                keys_skipped,
            } => debug!(
                "#{} fleet sync: sent {keys_sent} keys, updated {keys_updated}, skipped {keys_skipped}",
                self.context_id
            ),
            FleetOutcome::Failed { reason } => warn!(
                "#{} fleet rate-limit sync failed, limits are enforced per Envoy until it works: {reason}",
                self.context_id
            ),
            FleetOutcome::Ignored => {}
        }
    }

    fn poll_refresh(&mut self) {
        let Some(jobs) = &mut self.jobs else {
            return;
        };
        let (request, abandoned) = jobs.refresher.poll(&ProxyHost);
        if let Some(outcome) = abandoned {
            self.report_refresh(&outcome);
        }
        if let Some(request) = request {
            self.dispatch_snapshot(request);
        }
    }

    fn poll_usage(&mut self) {
        let (Some(worker), Some(jobs)) = (&self.worker, &mut self.jobs) else {
            return;
        };
        let Some((reporter, queue)) = &mut jobs.reporter else {
            return;
        };
        let (call, outcome) = reporter.poll(&ProxyHost, queue, &mut worker.tally.borrow_mut());
        if let Some(outcome) = outcome {
            self.report_usage(&outcome);
        }
        if let Some(call) = call {
            self.dispatch_usage(call);
        }
    }

    fn report_refresh(&self, outcome: &Outcome) {
        if let Some(worker) = &self.worker {
            worker.metrics.refresh(&ProxyHost, outcome);
        }
        match outcome {
            Outcome::Applied {
                version,
                keys,
                full,
            } => info!(
                "#{} snapshot version {version} applied ({}; {keys} keys)",
                self.context_id,
                if *full { "full" } else { "delta" }
            ),
            Outcome::Unchanged => debug!("#{} snapshot unchanged", self.context_id),
            Outcome::Failed { reason, .. } => {
                warn!(
                    "#{} snapshot refresh failed, last good snapshot keeps serving: {reason}",
                    self.context_id
                )
            }
            Outcome::Ignored => debug!(
                "#{} ignored a response to a call no longer awaited",
                self.context_id
            ),
            Outcome::NextPage(request) => debug!(
                "#{} fetching next snapshot page {}",
                self.context_id, request.path
            ),
        }
    }

    fn report_usage(&self, outcome: &ReportOutcome) {
        if let Some(worker) = &self.worker {
            worker.metrics.usage(&ProxyHost, outcome);
        }
        match outcome {
            ReportOutcome::Posted { reports } => {
                debug!("#{} posted usage ({reports} reports)", self.context_id)
            }
            ReportOutcome::Requeued { reason } => {
                warn!(
                    "#{} usage report failed, will retry: {reason}",
                    self.context_id
                )
            }
            ReportOutcome::Dropped { reason, reports } => {
                warn!(
                    "#{} usage report dropped after retries ({reports} reports): {reason}",
                    self.context_id
                )
            }
            ReportOutcome::Ignored => {}
        }
    }
}

impl Context for KeygateRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let status = status_of_call_response();
        let Some(jobs) = &mut self.jobs else {
            return;
        };
        if let Some((reporter, queue)) = &mut jobs.reporter {
            if reporter.awaits(token_id) {
                let outcome = reporter.on_response(&ProxyHost, queue, token_id, status);
                self.report_usage(&outcome);
                return;
            }
        }
        if let (Some((sync, queue)), Some(worker)) = (&mut jobs.fleet, &self.worker) {
            if sync.awaits(token_id) {
                let body = (body_size <= fleet::MAX_REPLY_BYTES)
                    .then(|| abi::get_buffer(BufferType::HttpCallResponseBody, 0, body_size))
                    .and_then(|read| read.ok().flatten());
                let outcome = sync.on_response(
                    &ProxyHost,
                    queue,
                    token_id,
                    (status, body.as_deref()),
                    &worker.config.rate_limits.windows,
                    worker.slots.get().min(worker.config.rate_limits.slots),
                );
                self.report_fleet(&outcome);
                return;
            }
        }
        // An oversized body is not copied into the VM at all; the refresher rejects it by size.
        let body = if body_size > MAX_BODY_BYTES {
            Vec::new()
        } else {
            abi::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let outcome = jobs
            .refresher
            .on_response(&ProxyHost, token_id, status, &body, body_size);
        for record in jobs.refresher.take_quarantined() {
            // By id and field only: a record never holds a secret, but keep logs to what
            // identifies the key.
            warn!(
                "#{} snapshot record quarantined (key treated as absent): key {:?} {}",
                self.context_id, record.id, record.error
            );
            if let Some(worker) = &self.worker {
                worker.metrics.quarantined(&ProxyHost);
            }
        }
        self.report_refresh(&outcome);
        match outcome {
            Outcome::NextPage(request) => self.dispatch_snapshot(request),
            Outcome::Applied { .. } | Outcome::Unchanged | Outcome::Failed { .. } => {
                if let Some(worker) = &self.worker {
                    self.publish_store_gauges(worker);
                }
                // With long polling the next call is due at once; do not wait for a tick.
                self.poll_refresh();
            }
            Outcome::Ignored => {}
        }
    }
}

impl RootContext for KeygateRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        info!(
            "#{} keygate {} starting",
            self.context_id,
            env!("CARGO_PKG_VERSION")
        );
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = abi::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let config = match Config::parse(&bytes, &|name| std::env::var(name).ok()) {
            Ok(config) => config,
            Err(err) => {
                error!(
                    "#{} keygate: invalid plugin configuration: {err}",
                    self.context_id
                );
                return false;
            }
        };
        let me = random_id();
        let reporter = if config.usage.enabled {
            match abi::register_shared_queue(QUEUE_NAME) {
                Ok(queue) => Some((
                    Reporter::new(me, config.usage.report_interval, config.control.timeout),
                    ProxyQueue(queue),
                )),
                Err(status) => {
                    error!(
                        "#{} keygate: could not register the usage queue ({status:?})",
                        self.context_id
                    );
                    return false;
                }
            }
        } else {
            None
        };
        let fleet = if config.rate_limits.fleet {
            match abi::register_shared_queue(fleet::QUEUE_NAME) {
                Ok(queue) => Some((
                    FleetSync::new(me, config.rate_limits.sync_interval, config.control.timeout),
                    ProxyQueue(queue),
                )),
                Err(status) => {
                    error!(
                        "#{} keygate: could not register the fleet sync queue ({status:?})",
                        self.context_id
                    );
                    return false;
                }
            }
        } else {
            None
        };
        let mut tick = (config.control.refresh_interval / 2)
            .min(config.usage.report_interval)
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        if config.rate_limits.fleet {
            // Half the sync interval, so a sync is never more than that late.
            tick = tick.min(config.rate_limits.sync_interval / 2);
        }
        info!(
            "#{} keygate configured: control cluster {:?}, refresh every {:?}, fail mode {:?}",
            self.context_id,
            config.control.cluster,
            config.control.refresh_interval,
            config.fail_mode
        );
        self.jobs = Some(Jobs {
            refresher: Refresher::new(me, config.control.clone(), config.rate_limits.slots),
            reporter,
            fleet,
        });
        let worker = Rc::new(Worker {
            metrics: Metrics::define(&ProxyHost),
            config,
            tally: RefCell::new(Tally::default()),
            slots: Cell::new(0),
            touched: RefCell::new(Default::default()),
            view: Cell::new(None),
        });
        self.publish_store_gauges(&worker);
        self.worker = Some(worker);
        self.tick = Some(tick);
        if abi::set_tick_period(FIRST_TICK.min(tick)).is_err() {
            error!(
                "#{} keygate: could not set the tick period",
                self.context_id
            );
            return false;
        }
        true
    }

    fn on_tick(&mut self) {
        if let Some(tick) = self.tick.take() {
            if abi::set_tick_period(tick).is_err() {
                error!(
                    "#{} keygate: could not set the tick period",
                    self.context_id
                );
            }
        }
        if let Some(worker) = &self.worker {
            worker.metrics.flush(&ProxyHost);
            self.publish_store_gauges(worker);
        }
        self.poll_refresh();
        self.poll_usage();
        self.poll_fleet();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(RequestFilter::new(context_id, worker, ProxyHost)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
