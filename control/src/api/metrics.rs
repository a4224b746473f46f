//! `GET /metrics`: the control service's own metrics in Prometheus's text format. Counts only
//! (no key, no proxy name), so it is served without a token, like `/healthz`. The proxy gauges
//! read the proxies once per scrape (O(proxies)).

use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::app::proxies as app_proxies;
use crate::domain::clock;
use crate::domain::proxies::ProxyState;
use crate::fleet::FleetCounts;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Every state a proxy can be in, each a series of `keygate_control_proxies`.
const STATES: [ProxyState; 3] = [ProxyState::Live, ProxyState::Stale, ProxyState::Revoked];

/// The fleet as the proxy gauges show it (one read of the proxies, per scrape).
struct FleetView {
    /// Proxies per state, in [`STATES`]' order.
    by_state: [u64; 3],
    max_lag_seconds: i64,
    max_lag_versions: u64,
}

impl FleetView {
    fn write(&self, text: &mut String) {
        let _ = writeln!(
            text,
            "# HELP keygate_control_proxies Known proxies by state (live: seen within --proxy-stale-after).\n\
             # TYPE keygate_control_proxies gauge"
        );
        for (state, count) in STATES.iter().zip(self.by_state) {
            let name = state.as_str();
            let _ = writeln!(text, "keygate_control_proxies{{state=\"{name}\"}} {count}");
        }
        let _ = writeln!(
            text,
            "# HELP keygate_control_proxy_snapshot_lag_seconds_max How long the live proxy furthest behind has not held the newest snapshot version.\n\
             # TYPE keygate_control_proxy_snapshot_lag_seconds_max gauge\n\
             keygate_control_proxy_snapshot_lag_seconds_max {}\n\
             # HELP keygate_control_proxy_snapshot_lag_versions_max Versions the live proxy furthest behind lacks.\n\
             # TYPE keygate_control_proxy_snapshot_lag_versions_max gauge\n\
             keygate_control_proxy_snapshot_lag_versions_max {}",
            self.max_lag_seconds, self.max_lag_versions
        );
    }
}

async fn fleet_view(state: &AppState) -> Result<FleetView, ApiError> {
    let proxies = state.blocking(app_proxies::list).await?;
    let head = *state.store.subscribe().borrow();
    let now = clock::now();
    let registry = &state.proxies;
    let mut view = FleetView {
        by_state: [0; 3],
        max_lag_seconds: 0,
        max_lag_versions: 0,
    };
    for proxy in proxies {
        let proxy_state = proxy.state(now, registry.stale_after);
        if let Some(slot) = STATES.iter().position(|state| *state == proxy_state) {
            view.by_state[slot] += 1;
        }
        if proxy_state == ProxyState::Live {
            let lag = proxy.lag(head, now, |held| registry.versions.behind_since(held));
            view.max_lag_seconds = view.max_lag_seconds.max(lag.num_seconds());
            view.max_lag_versions = view.max_lag_versions.max(proxy.lag_versions(head));
        }
    }
    Ok(view)
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let stats = &state.fleet_stats;
    let backend = match &*state.fleet {
        FleetCounts::Memory(_) => "memory",
        FleetCounts::Replicated(_) => "redis",
        FleetCounts::Database(_) => "database",
    };
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "keygate_control_fleet_redis_up",
        "gauge",
        "1 while the last flush of fleet counts to Redis succeeded (0 without Redis).",
        stats.up.load(Ordering::Relaxed),
    );
    metric(
        "keygate_control_fleet_flushes_total",
        "counter",
        "Flushes of fleet counts to Redis that succeeded.",
        stats.flushes.load(Ordering::Relaxed),
    );
    metric(
        "keygate_control_fleet_flush_failures_total",
        "counter",
        "Flushes of fleet counts to Redis that failed; answers use this replica's own counts.",
        stats.failures.load(Ordering::Relaxed),
    );
    metric(
        "keygate_control_fleet_flush_duration_microseconds",
        "gauge",
        "How long the last flush took.",
        stats.last_flush_micros.load(Ordering::Relaxed),
    );
    metric(
        "keygate_control_fleet_published_keys",
        "gauge",
        "Keys whose counts this replica shares through Redis.",
        stats.published_keys.load(Ordering::Relaxed),
    );
    metric(
        "keygate_control_fleet_live_replicas",
        "gauge",
        "Replicas that flushed to Redis in the last 5 s, as last read.",
        stats.live_replicas.load(Ordering::Relaxed),
    );
    metric(
        "keygate_control_usage_implausible_entries_total",
        "counter",
        "Usage report entries not counted: more allowed requests than any proxy could have let through.",
        crate::app::alerts::IMPLAUSIBLE_ENTRIES.load(Ordering::Relaxed),
    );
    metric(
        "keygate_control_fleet_implausible_counts_total",
        "counter",
        "Keys of fleet syncs not counted: more in a window than one Envoy can admit.",
        state.fleet_bounds.refused_total(),
    );
    metric(
        "keygate_control_fleet_bounds_version",
        "gauge",
        "The change-feed version the limits bounding fleet syncs have been read up to.",
        state.fleet_bounds.index().version,
    );
    metric(
        "keygate_control_fleet_bounded_keys",
        "gauge",
        "Limited keys whose limits bound fleet syncs (the index read from the change feed).",
        state.fleet_bounds.index().len() as u64,
    );
    let oauth = &state.oauth_failures;
    metric(
        "keygate_control_oauth_tokens_issued_total",
        "counter",
        "OAuth access tokens this replica issued.",
        oauth.issued.load(Ordering::Relaxed),
    );
    metric(
        "keygate_control_oauth_client_auth_failures_total",
        "counter",
        "Token requests whose client authentication failed (unknown id, wrong secret, unusable key).",
        oauth.failures.load(Ordering::Relaxed),
    );
    metric(
        "keygate_control_oauth_throttled_total",
        "counter",
        "Token requests refused 429 after too many failed authentications of their client id or address.",
        oauth.throttled.load(Ordering::Relaxed),
    );
    metric(
        "keygate_control_proxy_enrollments_total",
        "counter",
        "Proxies this replica enrolled (a new identity, or a new credential for a known name).",
        state.proxies.enrolled.load(Ordering::Relaxed),
    );
    metric(
        "keygate_control_proxy_enrollments_refused_total",
        "counter",
        "Enrollments refused: no usable enrollment token, or a revoked name.",
        state.proxies.enroll_refused.load(Ordering::Relaxed),
    );
    metric(
        "keygate_control_proxy_name_churn_total",
        "counter",
        "Enrollments of a name that had enrolled twice already within a minute: two proxies sharing a name, or one restarting in a loop.",
        state.proxies.churned.load(Ordering::Relaxed),
    );
    if let Ok(fleet) = fleet_view(&state).await {
        fleet.write(&mut text);
    }
    let _ = writeln!(
        text,
        "# HELP keygate_control_fleet_backend Where the fleet's rate-limit counts live.\n\
         # TYPE keygate_control_fleet_backend gauge\n\
         keygate_control_fleet_backend{{backend=\"{backend}\"}} 1"
    );
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
