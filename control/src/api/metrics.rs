//! `GET /metrics`: the control service's own metrics in Prometheus's text format. Counts only
//! (no key, no proxy name), so it is served without a token, like `/healthz`.

use crate::api::state::AppState;
use crate::fleet::FleetCounts;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::atomic::Ordering;

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
    let _ = writeln!(
        text,
        "# HELP keygate_control_fleet_backend Where the fleet's rate-limit counts live.\n\
         # TYPE keygate_control_fleet_backend gauge\n\
         keygate_control_fleet_backend{{backend=\"{backend}\"}} 1"
    );
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
