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

impl Stats for EnvoyStats {
    fn define(&self, kind: MetricKind, name: &str) -> Option<u32> {
        self.defined.id_of(kind, name, || {
            let mut envoy_id = 0usize;
            // SAFETY: the pointers are valid for the call; no label names.
            let result = unsafe {
                match kind {
                    MetricKind::Counter => {
                        abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                            self.config,
                            ModuleBuffer::of(name.as_bytes()),
                            std::ptr::null_mut(),
                            0,
                            &mut envoy_id,
                        )
                    }
                    MetricKind::Gauge => {
                        abi::envoy_dynamic_module_callback_http_filter_config_define_gauge(
                            self.config,
                            ModuleBuffer::of(name.as_bytes()),
                            std::ptr::null_mut(),
                            0,
                            &mut envoy_id,
                        )
                    }
                }
            };
            (result == METRICS_SUCCESS).then_some(envoy_id as u64)
        })
    }

    fn increment(&self, id: u32, delta: i64) {
        let Some((MetricKind::Counter, envoy_id)) = self.defined.envoy_id(id) else {
            return;
        };
        let Ok(delta) = u64::try_from(delta) else {
            return;
        };
        // SAFETY: an id Envoy gave for this configuration; no labels.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.config,
                envoy_id as usize,
                std::ptr::null_mut(),
                0,
                delta,
            );
        }
    }

    fn freeze(&self) {
        self.defined.freeze();
    }

    fn set(&self, id: u32, value: u64) {
        let Some((MetricKind::Gauge, envoy_id)) = self.defined.envoy_id(id) else {
            return;
        };
        // SAFETY: as `increment`.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_set_gauge(
                self.config,
                envoy_id as usize,
                std::ptr::null_mut(),
                0,
                value,
            );
        }
    }
}
