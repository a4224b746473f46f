//! Plain-text rendering of keys for people: an aligned table and a detail view.

use crate::client::answers::{EffectiveLimits, Key, UsageCounts, UsageReport};
use std::collections::BTreeMap;

/// Left-aligned columns separated by two spaces.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    std::iter::once(&header_row)
        .chain(rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A value as a cell: `-` when empty or absent.
fn text(value: &str) -> String {
    if value.is_empty() {
        "-".into()
    } else {
        value.to_string()
    }
}

fn optional(value: Option<&str>) -> String {
    text(value.unwrap_or_default())
}

/// `a,b`, or `(any)` when the list is empty (no restriction).
fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(any)".into()
    } else {
        items
            .iter()
            .map(|item| text(item))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `pk_live_…WXYZ`: enough to recognise a key, never enough to use it.
fn masked(key: &Key) -> String {
    format!("{}…{}", text(&key.prefix), text(&key.last4))
}

fn limits(limits: &EffectiveLimits) -> String {
    let enforced = &limits.enforced_by_proxy;
    [
        ("per_minute", enforced.per_minute),
        ("per_hour", enforced.per_hour),
        ("per_day", enforced.per_day),
        ("concurrent", enforced.concurrent),
        ("per_month", limits.per_month),
    ]
    .iter()
    .map(|(field, value)| {
        let value = value.map_or_else(|| "unlimited".to_string(), |value| value.to_string());
        format!("{field}={value}")
    })
    .collect::<Vec<_>>()
    .join(" ")
}

pub fn key_table(keys: &[Key]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            vec![
                text(&key.id),
                text(&key.name),
                key.environment.as_str().to_string(),
                text(&key.team),
                masked(key),
                list(&key.scopes),
                key.active.to_string(),
                key.plan.as_str().to_string(),
                optional(key.expires_at.as_deref()),
            ]
        })
        .collect();
    render(
        &[
            "ID", "NAME", "ENV", "TEAM", "KEY", "SCOPES", "ACTIVE", "PLAN", "EXPIRES",
        ],
        &rows,
    )
}

pub fn key_details(key: &Key) -> String {
    let rows: Vec<Vec<String>> = [
        ("id", text(&key.id)),
        ("name", text(&key.name)),
        ("environment", key.environment.as_str().to_string()),
        ("team", text(&key.team)),
        ("key", masked(key)),
        ("scopes", list(&key.scopes)),
        ("allowed_ips", list(&key.allowed_ips)),
        ("expires_at", optional(key.expires_at.as_deref())),
        ("active", key.active.to_string()),
        ("plan", key.plan.as_str().to_string()),
        ("limits", limits(&key.effective_limits)),
        (
            "quota_exceeded_until",
            optional(key.quota_exceeded_until.as_deref()),
        ),
        ("created_at", text(&key.created_at)),
        ("updated_at", text(&key.updated_at)),
        ("rotated_from", optional(key.rotated_from.as_deref())),
    ]
    .into_iter()
    .map(|(field, value)| vec![format!("{field}:"), value])
    .collect();
    let table = render(&["", ""], &rows);
    // The header row of a two-column detail view is empty; drop it.
    table.lines().skip(1).collect::<Vec<_>>().join("\n")
}

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

fn usage_row(label: String, counts: &UsageCounts) -> Vec<String> {
    vec![
        label,
        counts.allowed.to_string(),
        counts.total.to_string(),
        denials(&counts.denied),
    ]
}

/// A usage report: one row per bucket and a total row, under a line naming the range.
pub fn usage_table(report: &UsageReport) -> String {
    let heading = format!(
        "Usage of {} by {}, {} to {}",
        text(&report.key_id),
        text(&report.granularity),
        text(&report.from),
        text(&report.to),
    );
    let rows: Vec<Vec<String>> = report
        .buckets
        .iter()
        .map(|bucket| usage_row(text(&bucket.start), &bucket.counts))
        .chain(std::iter::once(usage_row("TOTAL".into(), &report.totals)))
        .collect();
    let table = render(&["START", "ALLOWED", "TOTAL", "DENIED"], &rows);
    format!("{heading}\n{table}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aligns_columns() {
        let table = render(&["A", "LONG"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(table, "A    LONG\nxyz  1");
    }

    fn key() -> Key {
        serde_json::from_value(json!({"id": "key_1", "name": "ci", "environment": "live",
            "team": "", "prefix": "pk_live_", "last4": "WXYZ", "scopes": [],
            "allowed_ips": ["10.0.0.0/8", "192.0.2.1"], "expires_at": null, "active": true,
            "plan": "pro", "limits": {"per_minute": 7},
            "effective_limits": {"per_minute": 7, "per_hour": null, "per_day": 10000,
                "concurrent": null, "per_month": null},
            "quota_exceeded_until": null, "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "rotated_from": null}))
        .unwrap()
    }

    #[test]
    fn never_shows_more_than_prefix_and_last4() {
        let table = key_table(std::slice::from_ref(&key()));
        assert_eq!(
            table,
            "ID     NAME  ENV   TEAM  KEY            SCOPES  ACTIVE  PLAN  EXPIRES\n\
             key_1  ci    live  -     pk_live_…WXYZ  (any)   true    pro   -"
        );
    }

    #[test]
    fn details_show_every_setting_and_the_effective_limits() {
        let details = key_details(&key());
        let lines: Vec<&str> = details.lines().collect();
        assert_eq!(lines.len(), 15, "{details}");
        assert_eq!(lines[0], "id:                    key_1");
        assert_eq!(lines[6], "allowed_ips:           10.0.0.0/8,192.0.2.1");
        assert_eq!(
            lines[10],
            "limits:                per_minute=7 per_hour=unlimited per_day=10000 \
             concurrent=unlimited per_month=unlimited"
        );
        assert_eq!(lines[14], "rotated_from:          -");
    }

    #[test]
    fn usage_table_has_a_row_per_bucket_and_a_total() {
        let report: UsageReport = serde_json::from_value(json!({"key_id": "key_1",
            "granularity": "day", "from": "2026-11-22T00:00:00Z", "to": "2026-11-24T00:00:00Z",
            "buckets": [{"start": "2026-11-23T00:00:00Z", "allowed": 8,
                "denied": {"RATE_LIMIT_EXCEEDED": 2}, "total": 10}],
            "totals": {"allowed": 8, "denied": {"RATE_LIMIT_EXCEEDED": 2}, "total": 10}}))
        .unwrap();
        let table = usage_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("Usage of key_1 by day"));
        assert!(lines[2].starts_with("2026-11-23T00:00:00Z  8"), "{table}");
        assert!(lines[3].starts_with("TOTAL") && lines[3].ends_with("RATE_LIMIT_EXCEEDED=2"));
    }
}
