use super::*;
use crate::cli::client::answers::UsageReport;
use crate::cli::client::usage::usage_table;
use serde_json::json;

fn now() -> DateTime<Utc> {
    clock::parse("2026-06-01T00:00:00Z").unwrap()
}

fn assert_fits(table: &str) {
    for line in table.lines() {
        assert!(width(line) <= MAX_WIDTH, "{} columns: {line}", width(line));
    }
}

#[test]
fn aligns_columns() {
    let columns = [column("A", Fit::Keep), column("LONG", Fit::Keep)];
    let table = render(&columns, &[vec!["xyz".into(), "1".into()]], true);
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
    let table = key_table(std::slice::from_ref(&key()), now());
    assert_eq!(
        table,
        "ID     NAME  TEAM  KEY            STATUS  PLAN  USED\n\
         key_1  ci    -     pk_live_…WXYZ  active  pro   -"
    );
}

#[test]
fn status_tells_revoked_from_expired() {
    let mut keys = vec![key(), key(), key(), key()];
    keys[1].active = false;
    keys[2].expires_at = Some("2026-06-01T00:00:00Z".into());
    keys[3].expires_at = Some("2026-06-01T00:00:01Z".into());
    let table = key_table(&keys, now());
    let statuses: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().nth(4).unwrap())
        .collect();
    assert_eq!(statuses, ["active", "inactive", "expired", "active"]);
}

#[test]
fn long_names_and_teams_are_cut_to_fit_80_columns() {
    let mut long = key();
    long.id = "key_0123456789abcdef".into();
    long.name = "n".repeat(128);
    long.team = "東".repeat(128);
    long.plan = crate::domain::plans::Plan::Enterprise;
    long.active = false;
    let table = key_table(&[long.clone(), key()], now());
    assert_fits(&table);
    let row = table.lines().nth(1).unwrap();
    assert!(row.starts_with("key_0123456789abcdef  nnnn"), "{row}");
    assert!(
        row.contains("n…  東東") && row.contains("…  pk_live_…WXYZ  inactive"),
        "{row}"
    );
    assert!(row.ends_with("inactive  enterprise  -"), "{row}");
    // Both cut columns get a fair share (a wide character may leave one column spare).
    let name = row.split("  ").nth(1).unwrap();
    assert!(width(name) >= 6, "{row}");
}

#[test]
fn wrapping_breaks_at_spaces_and_inside_long_words() {
    assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
    assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
    assert_eq!(wrap("ab 東東東", 4), ["ab", "東東", "東"]);
    assert_eq!(truncate("abcdef", 4), "abc…");
    assert_eq!(truncate("東東東", 4), "東…");
    assert_eq!(truncate("abcd", 4), "abcd");
}

#[test]
fn details_show_every_setting_and_the_effective_limits() {
    let details = key_details(&key());
    let lines: Vec<&str> = details.lines().collect();
    assert_fits(&details);
    assert_eq!(lines.len(), 17, "{details}");
    assert_eq!(lines[0], "id:                    key_1");
    assert_eq!(lines[6], "allowed_ips:           10.0.0.0/8, 192.0.2.1");
    assert_eq!(
        lines[10],
        "limits:                per_minute=7 per_hour=unlimited per_day=10000"
    );
    assert_eq!(
        lines[11],
        "                       concurrent=unlimited per_month=unlimited"
    );
    assert_eq!(lines[15], "rotated_from:          -");
    assert_eq!(lines[16], "last_used_at:          -");
}

#[test]
fn used_shows_how_long_ago_to_the_hour() {
    let cases = [
        (None, "-"),
        (Some("2026-06-01T05:00:00Z"), "0h"),
        (Some("2026-06-01T00:00:00Z"), "0h"),
        (Some("2026-05-31T23:00:00Z"), "1h"),
        (Some("2026-05-30T01:00:00Z"), "47h"),
        (Some("2026-05-29T00:00:00Z"), "3d"),
        (Some("2020-06-01T00:00:00Z"), "6y"),
    ];
    for (instant, expected) in cases {
        assert_eq!(age(instant, now()), expected, "{instant:?}");
    }
}

#[test]
fn long_detail_values_wrap_under_their_field() {
    let mut long = key();
    long.name = "word ".repeat(30).trim_end().to_string();
    long.allowed_ips = (0..20).map(|i| format!("10.{i}.0.0/16")).collect();
    let details = key_details(&long);
    assert_fits(&details);
    let continued = details
        .lines()
        .filter(|line| line.starts_with(&" ".repeat(23)))
        .count();
    assert!(continued >= 5, "{details}");
    let joined: String = details.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(joined.contains(&long.name), "{details}");
    assert!(joined.contains("10.19.0.0/16"), "{details}");
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
    assert_eq!(lines.len(), 5, "{table}");
    assert_eq!(lines[0], "Usage of key_1 by day");
    assert!(lines[2].starts_with("2026-11-23T00:00:00Z  8"), "{table}");
    assert!(lines[3].starts_with("TOTAL") && lines[3].ends_with("RATE_LIMIT_EXCEEDED=2"));
    assert_eq!(
        lines[4],
        "Range: 2026-11-22T00:00:00Z to 2026-11-24T00:00:00Z"
    );
}

#[test]
fn many_denial_codes_wrap_within_80_columns() {
    let denied = json!({"RATE_LIMIT_EXCEEDED": 123456, "QUOTA_EXCEEDED": 7,
        "IP_NOT_WHITELISTED": 99, "OPERATION_NOT_ALLOWED": 1, "API_KEY_EXPIRED": 3});
    let report: UsageReport = serde_json::from_value(json!({"key_id": "key_0123456789abcdef",
        "granularity": "hour", "from": "2026-11-22T21:15:00Z", "to": "2026-11-23T21:15:00Z",
        "buckets": [{"start": "2026-11-23T21:00:00Z", "allowed": 8, "denied": denied,
            "total": 123574}],
        "totals": {"allowed": 8, "denied": denied, "total": 123574}}))
    .unwrap();
    let table = usage_table(&report);
    assert_fits(&table);
    assert!(table.lines().count() > 5, "{table}");
}
