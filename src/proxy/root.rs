//! The root context, one per worker VM: reads the configuration, registers the shared queues,
//! sets the tick, and hands every tick and every call's answer to the host-independent
//! `background::Background` (which runs the snapshot refresh, usage reports and the fleet
//! sync); creates the per-request contexts.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::Duration;

use log::{error, info};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use crate::background::{self, Background, Queues};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::abi;
use crate::proxy::host::{ProxyHost, ProxyQueue};
use crate::request::{RequestFilter, Worker};
use crate::sync::queue::Queue;
use crate::sync::{fleet, usage};

pub struct KeygateRoot {
    context_id: u32,
    background: Option<Background>,
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

impl KeygateRoot {
    pub fn new(context_id: u32) -> KeygateRoot {
        KeygateRoot {
            context_id,
            background: None,
            tick: None,
        }
    }

    /// The shared queue `name`, when `wanted`; `Err` (logged) when Envoy refuses it.
    fn queue(&self, wanted: bool, name: &str, what: &str) -> Result<Option<Box<dyn Queue>>, ()> {
        if !wanted {
            return Ok(None);
        }
        match abi::register_shared_queue(name) {
            Ok(queue) => Ok(Some(Box::new(ProxyQueue(queue)))),
            Err(status) => {
                error!(
                    "#{} keygate: could not register the {what} queue ({status:?})",
                    self.context_id
                );
                Err(())
            }
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
        if let Some(background) = &mut self.background {
            background.on_http_call_response(&ProxyHost, token_id, body_size);
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
        let Ok(usage) = self.queue(config.usage.enabled, usage::QUEUE_NAME, "usage") else {
            return false;
        };
        let Ok(fleet) = self.queue(config.rate_limits.fleet, fleet::QUEUE_NAME, "fleet sync")
        else {
            return false;
        };
        let tick = background::tick_period(&config);
        info!(
            "#{} keygate configured: control cluster {:?}, refresh every {:?}, fail mode {:?}",
            self.context_id,
            config.control.cluster,
            config.control.refresh_interval,
            config.fail_mode
        );
        let worker = Rc::new(Worker::new(config, Metrics::define(&ProxyHost)));
        let queues = Queues { usage, fleet };
        let background = Background::new(self.context_id, random_id(), worker, queues);
        background.publish_store_gauges(&ProxyHost);
        self.background = Some(background);
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
        if let Some(background) = &mut self.background {
            background.on_tick(&ProxyHost);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = Rc::clone(self.background.as_ref()?.worker());
        Some(Box::new(RequestFilter::new(context_id, worker, ProxyHost)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
