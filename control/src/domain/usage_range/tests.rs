use super::*;

fn at(text: &str) -> DateTime<Utc> {
    clock::parse(text).unwrap()
}

fn query(from: Option<&str>, to: Option<&str>, granularity: Option<&str>) -> UsageQuery {
    UsageQuery {
        from: from.map(Into::into),
        to: to.map(Into::into),
        granularity: granularity.map(Into::into),
    }
}

#[test]
fn defaults_to_the_last_day_by_hour() {
    let now = at("2026-11-23T21:15:00Z");
    let range = validate(&UsageQuery::default(), now).unwrap();
    assert_eq!(
        range,
        UsageRange {
            from: at("2026-11-22T21:15:00Z"),
            to: now,
            granularity: Granularity::Hour
        }
    );
    assert_eq!(
        range.hour_starts(),
        (
            at("2026-11-22T21:00:00Z").timestamp(),
            at("2026-11-23T21:15:00Z").timestamp()
        )
    );
    let only_to = validate(&query(None, Some("2026-01-02T00:00:00Z"), None), now).unwrap();
    assert_eq!(only_to.from, at("2026-01-01T00:00:00Z"));
}

#[test]
fn errors_name_the_field() {
    let now = at("2026-11-23T21:15:00Z");
    let cases = [
        (query(Some("yesterday"), None, None), "from: \"yesterday\""),
        (query(None, Some("2026-13-01T00:00:00Z"), None), "to: "),
        (
            query(
                Some("2026-11-23T00:00:00Z"),
                Some("2026-11-23T00:00:00Z"),
                None,
            ),
            "from: must be before to",
        ),
        (
            query(Some("2026-11-24T00:00:00Z"), None, None),
            "from: must be before to",
        ),
        (
            query(
                Some("2025-11-22T00:00:00Z"),
                Some("2026-11-23T00:00:01Z"),
                None,
            ),
            "to: must be at most 366 days",
        ),
        (
            query(None, None, Some("week")),
            "granularity: must be hour or day",
        ),
    ];
    for (query, expected) in cases {
        let message = validate(&query, now).unwrap_err().to_string();
        assert!(message.starts_with(expected), "{query:?} gave {message}");
    }
    let full_year = query(
        Some("2024-01-01T00:00:00Z"),
        Some("2025-01-01T00:00:00Z"),
        None,
    );
    assert!(validate(&full_year, now).is_ok(), "366 days of a leap year");
}

fn row(hour: &str, code: &str, count: u64) -> HourCount {
    HourCount {
        hour_start: at(hour).timestamp(),
        code: code.into(),
        count,
    }
}

#[test]
fn sums_hours_and_days() {
    let rows = [
        row("2026-11-22T23:00:00Z", "ALLOWED", 5),
        row("2026-11-22T23:00:00Z", "RATE_LIMIT_EXCEEDED", 1),
        row("2026-11-23T00:00:00Z", "ALLOWED", 3),
        row("2026-11-23T05:00:00Z", "ALLOWED", 0),
        row("2026-11-23T21:00:00Z", "ALLOWED", 8),
        row("2026-11-23T21:00:00Z", "QUOTA_EXCEEDED", 2),
    ];
    let hourly = summarize(&rows, &[], Granularity::Hour);
    let starts: Vec<&str> = hourly.buckets.iter().map(|b| b.start.as_str()).collect();
    assert_eq!(
        starts,
        [
            "2026-11-22T23:00:00Z",
            "2026-11-23T00:00:00Z",
            "2026-11-23T21:00:00Z"
        ]
    );
    assert_eq!(hourly.buckets[0].counts.total, 6);
    assert_eq!(hourly.totals.allowed, 16);
    assert_eq!(
        hourly.totals.denied,
        BTreeMap::from([
            ("QUOTA_EXCEEDED".to_string(), 2),
            ("RATE_LIMIT_EXCEEDED".to_string(), 1)
        ])
    );
    assert_eq!(hourly.totals.total, 19);
    let daily = summarize(&rows, &[], Granularity::Day);
    assert_eq!(daily.buckets.len(), 2);
    assert_eq!(daily.buckets[0].start, "2026-11-22T00:00:00Z");
    assert_eq!(daily.buckets[1].start, "2026-11-23T00:00:00Z");
    assert_eq!(
        (
            daily.buckets[1].counts.allowed,
            daily.buckets[1].counts.total
        ),
        (11, 13)
    );
    assert_eq!(daily.totals, hourly.totals);
    let json = serde_json::to_value(&daily.buckets[0]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"start": "2026-11-22T00:00:00Z", "allowed": 5,
            "denied": {"RATE_LIMIT_EXCEEDED": 1}, "total": 6,
            "upstream": {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, "none": 0}, "routes": {}})
    );
    assert_eq!(summarize(&[], &[], Granularity::Day).buckets, []);
}

#[test]
fn detail_sums_into_classes_percentiles_and_routes() {
    let hour = "2026-11-23T21:00:00Z";
    let ms = |value| format!("ms/{}", latency::bucket_of(value));
    let rows = [
        row(hour, "ALLOWED", 100),
        row(hour, "QUOTA_EXCEEDED", 2),
        row(hour, "up/2xx", 95),
        row(hour, "up/5xx", 5),
        row(hour, &ms(10), 90),
        row(hour, &ms(300), 10),
        row(hour, "route/jobs:write", 100),
        row(hour, "route/jobs:write/QUOTA_EXCEEDED", 2),
        row(hour, "ev/dropped", 3),
        row(hour, "future/code", 7),
    ];
    let summary = summarize(&rows, &[], Granularity::Hour);
    let totals = &summary.totals;
    assert_eq!(
        (totals.allowed, totals.total),
        (100, 102),
        "detail is not counted twice"
    );
    assert_eq!(totals.upstream["5xx"], 5);
    assert_eq!(totals.upstream["none"], 0);
    let latency = totals.latency_ms.unwrap();
    assert_eq!(latency.p50, 10.0);
    assert!((latency.p95 - 300.0).abs() <= 300.0 / 16.0, "{latency:?}");
    let route = &totals.routes["jobs:write"];
    assert_eq!(
        (route.allowed, route.denied["QUOTA_EXCEEDED"], route.total),
        (100, 2, 102)
    );
    assert_eq!(totals.events_dropped, 3);
    assert_eq!(summary.buckets[0].counts, summary.totals);
}

#[test]
fn addresses_are_estimated_listed_and_a_burst_flagged() {
    let register_rows = |hour: &str, count: u32, offset: u32| {
        let start = at(hour).timestamp();
        let mut sketch = Vec::new();
        for n in 0..count {
            ip_sketch::raise(
                &mut sketch,
                ip_sketch::register_of(std::net::Ipv4Addr::from(offset + n).into()),
            );
        }
        sketch
            .into_iter()
            .map(move |(r, v)| (start, r, v))
            .collect::<Vec<_>>()
    };
    let hours = [
        "2026-11-23T10:00:00Z",
        "2026-11-23T11:00:00Z",
        "2026-11-23T12:00:00Z",
        "2026-11-23T13:00:00Z",
    ];
    let mut sketches = Vec::new();
    let mut rows = Vec::new();
    for (index, hour) in hours.iter().enumerate() {
        let count = if index == 3 { 400 } else { 10 };
        sketches.extend(register_rows(hour, count, 1_000 * index as u32));
        rows.push(row(hour, "ALLOWED", 50));
    }
    rows.push(row(hours[3], "ip/192.0.2.1", 30));
    rows.push(row(hours[3], "ip/192.0.2.2", 40));
    let summary = summarize(&rows, &sketches, Granularity::Hour);
    let seen: Vec<(u64, bool)> = summary
        .buckets
        .iter()
        .map(|b| {
            b.counts
                .client_ips
                .as_ref()
                .map(|ips| (ips.distinct, ips.unusual))
                .unwrap()
        })
        .collect();
    assert_eq!(seen[..3], [(10, false), (10, false), (10, false)]);
    assert!(
        seen[3].1 && (seen[3].0 as f64 - 400.0).abs() <= 52.0,
        "{seen:?}"
    );
    let totals = summary.totals.client_ips.unwrap();
    assert!(totals.unusual);
    assert!(
        (totals.distinct as f64 - 430.0).abs() <= 56.0,
        "{}",
        totals.distinct
    );
    assert_eq!(
        totals.top[0],
        IpCount {
            ip: "192.0.2.2".into(),
            requests: 40
        }
    );
    assert!(
        summarize(&[row(hours[0], "ALLOWED", 1)], &[], Granularity::Hour)
            .totals
            .client_ips
            .is_none()
    );
}
