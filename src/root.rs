//! The root context: configuration, the tick that drives snapshot refresh, and creation of
//! per-request contexts. One per worker VM.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::Duration;

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use crate::config::Config;
use crate::filter::RequestFilter;
use crate::host::{Host, ProxyHost};
use crate::metrics::Metrics;
use crate::refresh::{CallRequest, Outcome, Refresher, MAX_BODY_BYTES};
use crate::store;

pub struct KeygateRoot {
    context_id: u32,
    config: Option<Rc<Config>>,
    refresher: Option<Refresher>,
    metrics: Rc<Metrics>,
}

/// Random identity of this VM for the refresh lease; std's RandomState draws its keys from
/// WASI `random_get`, which Envoy provides.
fn random_id() -> u64 {
    RandomState::new().hash_one(0xC0FFEE_u64) | 1
}

impl KeygateRoot {
    pub fn new(context_id: u32) -> KeygateRoot {
        KeygateRoot {
            context_id,
            config: None,
            refresher: None,
            metrics: Rc::new(Metrics::default()),
        }
    }

    fn publish_store_gauges(&self) {
        let meta = store::read_meta(&ProxyHost);
        let age_seconds = if meta.loaded() {
            ProxyHost.now_ms().saturating_sub(meta.last_success_ms) / 1000
        } else {
            0
        };
        self.metrics.store(meta.keys, meta.version, age_seconds);
    }

    fn dispatch(&mut self, request: CallRequest) {
        let Some(config) = &self.config else {
            return;
        };
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        match hostcalls::dispatch_http_call(
            &config.control.cluster,
            headers,
            None,
            vec![],
            request.timeout,
        ) {
            Ok(token) => {
                debug!(
                    "#{} snapshot request {} dispatched as call {token}",
                    self.context_id, request.path
                );
                if let Some(refresher) = &mut self.refresher {
                    refresher.dispatched(token);
                }
            }
            Err(status) => {
                let reason = format!(
                    "could not call cluster {:?} ({status:?}); is it defined in the Envoy config?",
                    config.control.cluster
                );
                if let Some(refresher) = &mut self.refresher {
                    let outcome = refresher.dispatch_failed(&ProxyHost, reason);
                    self.report(&outcome);
                }
            }
        }
    }

    fn poll(&mut self) {
        let Some(refresher) = &mut self.refresher else {
            return;
        };
        let (request, abandoned) = refresher.poll(&ProxyHost);
        if let Some(outcome) = abandoned {
            self.report(&outcome);
        }
        if let Some(request) = request {
            self.dispatch(request);
        }
    }

    fn report(&self, outcome: &Outcome) {
        self.metrics.refresh(outcome);
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
}

impl Context for KeygateRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let status = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders)
            .ok()
            .and_then(|headers| {
                headers
                    .into_iter()
                    .find(|(name, _)| name == ":status")
                    .and_then(|(_, value)| std::str::from_utf8(&value).ok()?.parse::<u32>().ok())
            });
        // An oversized body is not copied into the VM at all; the refresher rejects it by size.
        let body = if body_size > MAX_BODY_BYTES {
            Vec::new()
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let Some(refresher) = &mut self.refresher else {
            return;
        };
        let outcome = refresher.on_response(&ProxyHost, token_id, status, &body, body_size);
        self.report(&outcome);
        match outcome {
            Outcome::NextPage(request) => self.dispatch(request),
            Outcome::Applied { .. } | Outcome::Unchanged | Outcome::Failed { .. } => {
                self.publish_store_gauges();
                // With long polling the next call is due at once; do not wait for a tick.
                self.poll();
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
        let bytes = hostcalls::get_buffer(
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
        self.metrics = Rc::new(Metrics::define());
        let tick = (config.control.refresh_interval / 2)
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        self.refresher = Some(Refresher::new(random_id(), config.control.clone()));
        info!(
            "#{} keygate configured: control cluster {:?}, refresh every {:?}, fail mode {:?}",
            self.context_id,
            config.control.cluster,
            config.control.refresh_interval,
            config.fail_mode
        );
        self.config = Some(Rc::new(config));
        if hostcalls::set_tick_period(tick).is_err() {
            error!(
                "#{} keygate: could not set the tick period",
                self.context_id
            );
            return false;
        }
        self.publish_store_gauges();
        true
    }

    fn on_tick(&mut self) {
        self.publish_store_gauges();
        self.poll();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(RequestFilter::new(
            context_id,
            config,
            Rc::clone(&self.metrics),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
