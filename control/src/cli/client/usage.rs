//! Usage and events for people: a key's or a team's usage by hour or day (with what failed,
//! the 95th percentile duration and the routes), and a key's recent events, within 80 columns.

use crate::cli::client::answers::{
    KeyEvents, TeamUsageReport, UsageBucket, UsageCounts, UsageReport,
};
use crate::cli::client::table::{column, render, text, Fit};
use std::collections::BTreeMap;

/// `RATE_LIMIT_EXCEEDED=2 QUOTA_EXCEEDED=1`, or `-` when nothing was denied.
fn denials(denied: &BTreeMap<String, u64>) -> String {
    if denied.is_empty() {
        return "-".into();
    }
    denied
        .iter()
        .map(|(code, count)| format!("{code}={count}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Allowed requests the upstream failed (`5xx`) or never answered (`none`).
fn failed(counts: &UsageCounts) -> u64 {
    ["5xx", "none"]
        .iter()
        .filter_map(|class| counts.upstream.get(*class))
        .sum()
}

/// The 95th percentile duration in whole milliseconds, or `-` without samples.
fn p95(counts: &UsageCounts) -> String {
    counts
        .latency_ms
        .map_or_else(|| "-".into(), |latency| format!("{:.0}", latency.p95))
}

fn usage_row(label: String, counts: &UsageCounts) -> Vec<String> {
    vec![
        label,
        counts.allowed.to_string(),
        counts.total.to_string(),
        failed(counts).to_string(),
        p95(counts),
        denials(&counts.denied),
    ]
}

/// A usage report: one row per bucket and a total row, between a line naming the key and one
/// naming the range (together they would not fit one line).
pub fn usage_table(report: &UsageReport) -> String {
    let heading = format!(
        "Usage of {} by {}",
        text(&report.key_id),
        text(report.granularity.as_str())
    );
    usage_buckets(
        heading,
        &report.from,
        &report.to,
        &report.buckets,
        &report.totals,
    )
}

/// A team's (or every key's) usage, laid out as [`usage_table`].
pub fn team_usage_table(report: &TeamUsageReport) -> String {
    let whose = report.team.as_deref().map_or_else(
        || "every key".to_string(),
        |team| format!("team {}", text(team)),
    );
    let heading = format!("Usage of {whose} by {}", text(report.granularity.as_str()));
    usage_buckets(
        heading,
        &report.from,
        &report.to,
        &report.buckets,
        &report.totals,
    )
}

fn usage_buckets(
    heading: String,
    from: &str,
    to: &str,
    buckets: &[UsageBucket],
    totals: &UsageCounts,
) -> String {
    let range = format!("Range: {} to {}", text(from), text(to));
    let rows: Vec<Vec<String>> = buckets
        .iter()
        .map(|bucket| usage_row(text(&bucket.start), &bucket.counts))
        .chain(std::iter::once(usage_row("TOTAL".into(), totals)))
        .collect();
    let columns = [
        column("START", Fit::Keep),
        column("ALLOWED", Fit::Keep),
        column("TOTAL", Fit::Keep),
        column("FAILED", Fit::Keep),
        column("P95 MS", Fit::Keep),
        column("DENIED", Fit::Wrap),
    ];
    let table = render(&columns, &rows, true);
    let mut out = format!("{heading}\n{table}\n{range}");
    if !totals.routes.is_empty() {
        let rows: Vec<Vec<String>> = totals
            .routes
            .iter()
            .map(|(name, route)| {
                vec![
                    text(name),
                    route.allowed.to_string(),
                    route.total.to_string(),
                    denials(&route.denied),
                ]
            })
            .collect();
        let columns = [
            column("ROUTE", Fit::Truncate),
            column("ALLOWED", Fit::Keep),
            column("TOTAL", Fit::Keep),
            column("DENIED", Fit::Wrap),
        ];
        out.push_str("\nBy route:\n");
        out.push_str(&render(&columns, &rows, true));
    }
    out
}

/// A key's events, newest first: when, what happened, and to which request.
pub fn events_table(events: &KeyEvents) -> String {
    if events.events.is_empty() {
        return format!("No events of {}.", text(&events.key_id));
    }
    let rows: Vec<Vec<String>> = events
        .events
        .iter()
        .map(|event| {
            vec![
                text(&event.at),
                text(&event.outcome),
                event.status.to_string(),
                format!("{} {}", text(&event.method), text(&event.path)),
                text(event.client_ip.as_deref().unwrap_or("-")),
                text(event.request_id.as_deref().unwrap_or("-")),
            ]
        })
        .collect();
    let columns = [
        column("AT", Fit::Keep),
        column("OUTCOME", Fit::Truncate),
        column("STATUS", Fit::Keep),
        column("REQUEST", Fit::Wrap),
        column("CLIENT", Fit::Truncate),
        column("REQUEST ID", Fit::Truncate),
    ];
    render(&columns, &rows, true)
}
