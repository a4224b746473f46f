//! Plain-text rendering of keys for people: an aligned table and a detail view.

use serde_json::Value;

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

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(text) if text.is_empty() => "-".into(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.is_empty() => "(any)".into(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `pk_live_…WXYZ`: enough to recognise a key, never enough to use it.
fn masked(key: &Value) -> String {
    format!("{}…{}", text(&key["prefix"]), text(&key["last4"]))
}

fn limits(limits: &Value) -> String {
    [
        "per_minute",
        "per_hour",
        "per_day",
        "concurrent",
        "per_month",
    ]
    .iter()
    .map(|field| {
        let value = match &limits[field] {
            Value::Null => "unlimited".to_string(),
            other => other.to_string(),
        };
        format!("{field}={value}")
    })
    .collect::<Vec<_>>()
    .join(" ")
}

pub fn key_table(keys: &[Value]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            vec![
                text(&key["id"]),
                text(&key["name"]),
                text(&key["environment"]),
                text(&key["team"]),
                masked(key),
                text(&key["scopes"]),
                text(&key["active"]),
                text(&key["plan"]),
                text(&key["expires_at"]),
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

pub fn key_details(key: &Value) -> String {
    let rows: Vec<Vec<String>> = [
        ("id", text(&key["id"])),
        ("name", text(&key["name"])),
        ("environment", text(&key["environment"])),
        ("team", text(&key["team"])),
        ("key", masked(key)),
        ("scopes", text(&key["scopes"])),
        ("allowed_ips", text(&key["allowed_ips"])),
        ("expires_at", text(&key["expires_at"])),
        ("active", text(&key["active"])),
        ("plan", text(&key["plan"])),
        ("limits", limits(&key["effective_limits"])),
        ("quota_exceeded_until", text(&key["quota_exceeded_until"])),
        ("created_at", text(&key["created_at"])),
        ("updated_at", text(&key["updated_at"])),
        ("rotated_from", text(&key["rotated_from"])),
    ]
    .into_iter()
    .map(|(field, value)| vec![format!("{field}:"), value])
    .collect();
    let table = render(&["", ""], &rows);
    // The header row of a two-column detail view is empty; drop it.
    table.lines().skip(1).collect::<Vec<_>>().join("\n")
}

/// `RATE_LIMIT_EXCEEDED=2 QUOTA_EXCEEDED=1`, or `-` when nothing was denied.
fn denials(denied: &Value) -> String {
    let codes: Vec<String> = denied
        .as_object()
        .map(|codes| {
            codes
                .iter()
                .map(|(code, count)| format!("{code}={count}"))
                .collect()
        })
        .unwrap_or_default();
    if codes.is_empty() {
        "-".into()
    } else {
        codes.join(" ")
    }
}

fn usage_row(label: String, counts: &Value) -> Vec<String> {
    vec![
        label,
        text(&counts["allowed"]),
        text(&counts["total"]),
        denials(&counts["denied"]),
    ]
}

/// A usage report: one row per bucket and a total row, under a line naming the range.
pub fn usage_table(report: &Value) -> String {
    let heading = format!(
        "Usage of {} by {}, {} to {}",
        text(&report["key_id"]),
        text(&report["granularity"]),
        text(&report["from"]),
        text(&report["to"]),
    );
    let buckets = report["buckets"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = buckets
        .iter()
        .map(|bucket| usage_row(text(&bucket["start"]), bucket))
        .chain(std::iter::once(usage_row(
            "TOTAL".into(),
            &report["totals"],
        )))
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

    #[test]
    fn never_shows_more_than_prefix_and_last4() {
        let key =
            json!({"id":"key_1","prefix":"pk_live_","last4":"WXYZ","scopes":[],"active":true});
        let table = key_table(std::slice::from_ref(&key));
        assert!(
            table.contains("pk_live_…WXYZ") && table.contains("(any)"),
            "{table}"
        );
        assert!(key_details(&key).contains("active:"));
    }

    #[test]
    fn usage_table_has_a_row_per_bucket_and_a_total() {
        let report = json!({"key_id": "key_1", "granularity": "day",
            "from": "2026-11-22T00:00:00Z", "to": "2026-11-24T00:00:00Z",
            "buckets": [{"start": "2026-11-23T00:00:00Z", "allowed": 8,
                "denied": {"RATE_LIMIT_EXCEEDED": 2}, "total": 10}],
            "totals": {"allowed": 8, "denied": {"RATE_LIMIT_EXCEEDED": 2}, "total": 10}});
        let table = usage_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("Usage of key_1 by day"));
        assert!(lines[2].starts_with("2026-11-23T00:00:00Z  8"), "{table}");
        assert!(lines[3].starts_with("TOTAL") && lines[3].ends_with("RATE_LIMIT_EXCEEDED=2"));
    }
}
