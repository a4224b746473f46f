//! The metrics Keygate exports, defined and updated through the `Host`. Envoy 1.40 publishes
//! them under their own names in `/stats/prometheus` (`keygate_requests_allowed`, …; docs/
//! operations.md lists them). Defining the same name in every worker VM yields the same stat.

use std::cell::Cell;

use crate::host::{Host, MetricKind};
use crate::policy::decision::DenyCode;
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
    fleet_sync_ok: u32,
    fleet_sync_failed: u32,
    fleet_keys_synced: u32,
    fleet_remote_age_seconds: u32,
    fleet_refused: u32,
    counted_ahead: u32,
    checksum_failed: u32,
    /// Allowed and denied requests counted since the last `flush`: the request path counts in
    /// the VM and the tick adds them to Envoy's stats, one host call per tick instead of one
    /// per request.
    pending_allowed: Cell<u64>,
    /// Requests counted ahead since the last `flush`, likewise.
    pending_counted_ahead: Cell<u64>,
    pending_denied: [Cell<u64>; DenyCode::ALL.len()],
}

fn add(host: &(impl Host + ?Sized), id: u32) {
    if id != 0 {
        host.increment_metric(id, 1);
    }
}

fn set(host: &(impl Host + ?Sized), id: u32, value: u64) {
    if id != 0 {
        host.record_metric(id, value);
    }
}

impl Metrics {
    pub fn define(host: &(impl Host + ?Sized)) -> Metrics {
        Metrics::define_with(|kind, name| host.define_metric(kind, name))
    }

    /// Every metric, each defined by `define_metric` (`None`: refused, then never counted).
    pub fn define_with(define_metric: impl Fn(MetricKind, &str) -> Option<u32>) -> Metrics {
        let define = |kind, name: &str| define_metric(kind, name).unwrap_or(0);
        let mut denied = [0; DenyCode::ALL.len()];
        for code in DenyCode::ALL {
            denied[code.index()] = define(
                MetricKind::Counter,
                &format!(
                    "keygate_requests_denied_{}",
                    code.as_str().to_ascii_lowercase()
                ),
            );
        }
        Metrics {
            allowed: define(MetricKind::Counter, "keygate_requests_allowed"),
            fail_open: define(MetricKind::Counter, "keygate_requests_fail_open"),
            ratelimit_uncounted: define(MetricKind::Counter, "keygate_ratelimit_uncounted"),
            usage_posted: define(MetricKind::Counter, "keygate_usage_reports_posted"),
            usage_failed: define(MetricKind::Counter, "keygate_usage_reports_failed"),
            usage_dropped: define(MetricKind::Counter, "keygate_usage_reports_dropped"),
            denied,
            refresh_ok: define(MetricKind::Counter, "keygate_snapshot_refresh_ok"),
            refresh_unchanged: define(MetricKind::Counter, "keygate_snapshot_refresh_unchanged"),
            refresh_failed: define(MetricKind::Counter, "keygate_snapshot_refresh_failed"),
            snapshot_rejected: define(MetricKind::Counter, "keygate_snapshot_rejected"),
            records_quarantined: define(
                MetricKind::Counter,
                "keygate_snapshot_records_quarantined",
            ),
            keys_loaded: define(MetricKind::Gauge, "keygate_keys_loaded"),
            snapshot_version: define(MetricKind::Gauge, "keygate_snapshot_version"),
            snapshot_age_seconds: define(MetricKind::Gauge, "keygate_snapshot_age_seconds"),
            fleet_sync_ok: define(MetricKind::Counter, "keygate_ratelimit_sync_ok"),
            fleet_sync_failed: define(MetricKind::Counter, "keygate_ratelimit_sync_failed"),
            fleet_keys_synced: define(MetricKind::Counter, "keygate_ratelimit_keys_synced"),
            fleet_remote_age_seconds: define(
                MetricKind::Gauge,
                "keygate_ratelimit_remote_age_seconds",
            ),
            fleet_refused: define(MetricKind::Counter, "keygate_ratelimit_refused_by_fleet"),
            counted_ahead: define(MetricKind::Counter, "keygate_ratelimit_counted_ahead"),
            checksum_failed: define(MetricKind::Counter, "keygate_keys_checksum_failed"),
            pending_allowed: Cell::new(0),
            pending_counted_ahead: Cell::new(0),
            pending_denied: Default::default(),
        }
    }

    /// An allowed request; reaches Envoy's stats at the next `flush`.
    pub fn allowed(&self) {
        self.pending_allowed.set(self.pending_allowed.get() + 1);
    }

    /// Adds the requests counted since the last call to Envoy's stats (every tick).
    pub fn flush(&self, host: &(impl Host + ?Sized)) {
        let add_pending = |id: u32, pending: &Cell<u64>| {
            let count = pending.replace(0);
            if id != 0 && count > 0 {
                host.increment_metric(id, count as i64);
            }
        };
        add_pending(self.allowed, &self.pending_allowed);
        add_pending(self.counted_ahead, &self.pending_counted_ahead);
        for (id, pending) in self.denied.iter().zip(&self.pending_denied) {
            add_pending(*id, pending);
        }
    }

    pub fn fail_open(&self, host: &(impl Host + ?Sized)) {
        add(host, self.fail_open);
    }

    /// A presented key of the checksummed format whose checksum did not hold (refused as
    /// `INVALID_API_KEY` before hashing; also counted there).
    pub fn checksum_failed(&self, host: &(impl Host + ?Sized)) {
        add(host, self.checksum_failed);
    }

    /// A rate-limited request that could not be counted (no free slot, or CAS contention).
    pub fn uncounted(&self, host: &(impl Host + ?Sized)) {
        add(host, self.ratelimit_uncounted);
    }

    /// A request this Envoy's own count would have admitted, refused because of what the rest
    /// of the fleet admitted.
    pub fn refused_by_fleet(&self, host: &(impl Host + ?Sized)) {
        add(host, self.fleet_refused);
    }

    /// Requests of a busy key counted ahead of their arrival, as credits (`limits/credits.rs`);
    /// reaches Envoy's stats at the next `flush`.
    pub fn counted_ahead(&self, requests: u64) {
        let pending = &self.pending_counted_ahead;
        pending.set(pending.get().saturating_add(requests));
    }

    /// A fleet sync answered (`keys`: keys sent in it) or failed.
    pub fn fleet_sync(&self, host: &(impl Host + ?Sized), keys: Option<u64>) {
        match keys {
            Some(keys) => {
                add(host, self.fleet_sync_ok);
                if keys > 0 && self.fleet_keys_synced != 0 {
                    host.increment_metric(self.fleet_keys_synced, keys as i64);
                }
            }
            None => add(host, self.fleet_sync_failed),
        }
    }

    /// Seconds since the remote counts were last brought up to date (0 before the first).
    pub fn fleet_remote_age(&self, host: &(impl Host + ?Sized), seconds: u64) {
        set(host, self.fleet_remote_age_seconds, seconds);
    }

    pub fn usage(&self, host: &(impl Host + ?Sized), outcome: &ReportOutcome) {
        match outcome {
            ReportOutcome::Posted { .. } => add(host, self.usage_posted),
            ReportOutcome::Requeued { .. } => add(host, self.usage_failed),
            ReportOutcome::Dropped { .. } => {
                add(host, self.usage_failed);
                add(host, self.usage_dropped);
            }
        }
    }

    /// A denied request; reaches Envoy's stats at the next `flush`.
    pub fn denied(&self, code: DenyCode) {
        if let Some(pending) = self.pending_denied.get(code.index()) {
            pending.set(pending.get() + 1);
        }
    }

    pub fn refresh(&self, host: &(impl Host + ?Sized), outcome: &Outcome) {
        match outcome {
            Outcome::Applied { .. } => add(host, self.refresh_ok),
            Outcome::Unchanged => add(host, self.refresh_unchanged),
            Outcome::Failed(error) => {
                add(host, self.refresh_failed);
                if error.rejected() {
                    add(host, self.snapshot_rejected);
                }
            }
            Outcome::NextPage { .. } | Outcome::Lost => {}
        }
    }

    /// A snapshot record left out because it failed validation.
    pub fn quarantined(&self, host: &(impl Host + ?Sized)) {
        add(host, self.records_quarantined);
    }

    pub fn store(&self, host: &(impl Host + ?Sized), keys: u64, version: u64, age_seconds: u64) {
        set(host, self.keys_loaded, keys);
        set(host, self.snapshot_version, version);
        set(host, self.snapshot_age_seconds, age_seconds);
    }
}
