//! `Stats` on Envoy's config-level metric callbacks (any thread may count: Envoy's counters and
//! gauges are atomic, and the callbacks only look the metric up by id in a table fixed when the
//! configuration was made).

use keygate::host::MetricKind;

use crate::abi::{self, FilterConfigEnvoyPtr, ModuleBuffer, METRICS_SUCCESS};
use crate::stats::{Defined, Stats};

pub struct EnvoyStats {
    config: FilterConfigEnvoyPtr,
    defined: Defined,
}

// SAFETY: the config pointer is Envoy's filter configuration, which outlives this module's
// configuration object (Envoy destroys ours first); the metric callbacks it is passed to may
// be called from any thread (see the module docs).
unsafe impl Send for EnvoyStats {}
unsafe impl Sync for EnvoyStats {}

impl EnvoyStats {
    pub fn new(config: FilterConfigEnvoyPtr) -> EnvoyStats {
        EnvoyStats {
            config,
            defined: Defined::default(),
        }
    }
}

/// Envoy's callback that defines a counter or a gauge of a configuration.
type DefineCallback = unsafe extern "C" fn(
    FilterConfigEnvoyPtr,
    ModuleBuffer,
    *mut ModuleBuffer,
    usize,
    *mut usize,
) -> abi::MetricsResult;

/// Envoy's callback that adds to a counter or sets a gauge of a configuration.
type CountCallback = unsafe extern "C" fn(
    FilterConfigEnvoyPtr,
    usize,
    *mut ModuleBuffer,
    usize,
    u64,
) -> abi::MetricsResult;

impl EnvoyStats {
    /// Calls `count` with Envoy's id of our `id`, when that is a metric of `kind`.
    fn count(&self, kind: MetricKind, id: u32, count: CountCallback, value: u64) {
        let Some((defined, envoy_id)) = self.defined.envoy_id(id) else {
            return;
        };
        if defined != kind {
            return;
        }
        // SAFETY: an id Envoy gave for this configuration, of the callback's kind; no labels.
        unsafe {
            count(
                self.config,
                envoy_id as usize,
                std::ptr::null_mut(),
                0,
                value,
            );
        }
    }
}

impl Stats for EnvoyStats {
    fn define(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let define: DefineCallback = match kind {
            MetricKind::Counter => {
                abi::envoy_dynamic_module_callback_http_filter_config_define_counter
            }
            MetricKind::Gauge => abi::envoy_dynamic_module_callback_http_filter_config_define_gauge,
        };
        self.defined.id_of(kind, name, || {
            let mut envoy_id = 0usize;
            // SAFETY: the pointers are valid for the call; no label names.
            let result = unsafe {
                define(
                    self.config,
                    ModuleBuffer::of(name.as_bytes()),
                    std::ptr::null_mut(),
                    0,
                    &mut envoy_id,
                )
            };
            (result == METRICS_SUCCESS).then_some(envoy_id as u64)
        })
    }

    fn increment(&self, id: u32, delta: i64) {
        if let Ok(delta) = u64::try_from(delta) {
            let add = abi::envoy_dynamic_module_callback_http_filter_config_increment_counter;
            self.count(MetricKind::Counter, id, add, delta);
        }
    }

    fn set(&self, id: u32, value: u64) {
        let set = abi::envoy_dynamic_module_callback_http_filter_config_set_gauge;
        self.count(MetricKind::Gauge, id, set, value);
    }

    fn freeze(&self) {
        self.defined.freeze();
    }
}
