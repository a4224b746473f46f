//! Envoy stats through proxy-wasm metrics. Envoy publishes them under the `wasmcustom`
//! prefix, e.g. `wasmcustom.keygate_requests_allowed` (`envoy_wasmcustom_keygate_requests_allowed`
//! in `/stats/prometheus`). Defining the same name in every worker VM yields the same stat.

use proxy_wasm::types::MetricType;

use crate::policy::decision::DenyCode;
use crate::proxy::abi;
use crate::sync::refresh::Outcome;
use crate::sync::usage::ReportOutcome;

/// Metric ids of this VM; 0 (never a real id) when definition failed, which makes updates
/// harmless no-ops.
#[derive(Debug, Default)]
pub struct Metrics {
    allowed: u32,
    fail_open: u32,
    ratelimit_uncounted: u32,
    usage_posted: u32,
    usage_failed: u32,
    usage_dropped: u32,
    denied: [u32; DenyCode::ALL.len()],
    refresh_ok: u32,
    refresh_unchanged: u32,
    refresh_failed: u32,
    snapshot_rejected: u32,
    records_quarantined: u32,
    keys_loaded: u32,
    snapshot_version: u32,
    snapshot_age_seconds: u32,
}

fn define(metric_type: MetricType, name: &str) -> u32 {
    abi::define_metric(metric_type, name).unwrap_or(0)
}

fn add(id: u32) {
    if id != 0 {
        let _ = abi::increment_metric(id, 1);
    }
}

fn set(id: u32, value: u64) {
    if id != 0 {
        let _ = abi::record_metric(id, value);
    }
}

impl Metrics {
    pub fn define() -> Metrics {
        let mut denied = [0; DenyCode::ALL.len()];
        for code in DenyCode::ALL {
            denied[code.index()] = define(
                MetricType::Counter,
                &format!(
                    "keygate_requests_denied_{}",
                    code.as_str().to_ascii_lowercase()
                ),
            );
        }
        Metrics {
            allowed: define(MetricType::Counter, "keygate_requests_allowed"),
            fail_open: define(MetricType::Counter, "keygate_requests_fail_open"),
            ratelimit_uncounted: define(MetricType::Counter, "keygate_ratelimit_uncounted"),
            usage_posted: define(MetricType::Counter, "keygate_usage_reports_posted"),
            usage_failed: define(MetricType::Counter, "keygate_usage_reports_failed"),
            usage_dropped: define(MetricType::Counter, "keygate_usage_reports_dropped"),
            denied,
            refresh_ok: define(MetricType::Counter, "keygate_snapshot_refresh_ok"),
            refresh_unchanged: define(MetricType::Counter, "keygate_snapshot_refresh_unchanged"),
            refresh_failed: define(MetricType::Counter, "keygate_snapshot_refresh_failed"),
            snapshot_rejected: define(MetricType::Counter, "keygate_snapshot_rejected"),
            records_quarantined: define(
                MetricType::Counter,
                "keygate_snapshot_records_quarantined",
            ),
            keys_loaded: define(MetricType::Gauge, "keygate_keys_loaded"),
            snapshot_version: define(MetricType::Gauge, "keygate_snapshot_version"),
            snapshot_age_seconds: define(MetricType::Gauge, "keygate_snapshot_age_seconds"),
        }
    }

    pub fn allowed(&self) {
        add(self.allowed);
    }

    pub fn fail_open(&self) {
        add(self.fail_open);
    }

    /// A rate-limited request that could not be counted (no free slot, or CAS contention).
    pub fn uncounted(&self) {
        add(self.ratelimit_uncounted);
    }

    pub fn usage(&self, outcome: &ReportOutcome) {
        match outcome {
            ReportOutcome::Posted { .. } => add(self.usage_posted),
            ReportOutcome::Requeued { .. } => add(self.usage_failed),
            ReportOutcome::Dropped { .. } => {
                add(self.usage_failed);
                add(self.usage_dropped);
            }
            ReportOutcome::Ignored => {}
        }
    }

    pub fn denied(&self, code: DenyCode) {
        add(self.denied[code.index()]);
    }

    pub fn refresh(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Applied { .. } => add(self.refresh_ok),
            Outcome::Unchanged => add(self.refresh_unchanged),
            Outcome::Failed { rejected, .. } => {
                add(self.refresh_failed);
                if *rejected {
                    add(self.snapshot_rejected);
                }
            }
            Outcome::Ignored | Outcome::NextPage(_) => {}
        }
    }

    /// A snapshot record left out because it failed validation.
    pub fn quarantined(&self) {
        add(self.records_quarantined);
    }

    pub fn store(&self, keys: u64, version: u64, age_seconds: u64) {
        set(self.keys_loaded, keys);
        set(self.snapshot_version, version);
        set(self.snapshot_age_seconds, age_seconds);
    }
}
