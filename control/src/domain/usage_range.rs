//! The usage read (`GET /v1/keys/{id}/usage`) as pure functions: its query validated into a
//! range, and stored hours summed into hour or UTC-day buckets.

use crate::domain::clock;
use crate::domain::usage_report::StoredCode;
use chrono::{DateTime, Duration, Utc};
use keygate_contract::latency;
use keygate_contract::usage::UPSTREAM_CLASSES;
use keygate_contract::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One stored count: a key's requests with one outcome in one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// Unix seconds of the UTC hour start.
    pub hour_start: i64,
    /// `ALLOWED` or a denial code.
    pub code: String,
    pub count: u64,
}

/// Longest range one read may cover.
const MAX_RANGE_DAYS: i64 = 366;
/// The range when `from` is not given: the day before `to`.
const DEFAULT_RANGE_HOURS: i64 = 24;
const SECONDS_PER_HOUR: i64 = 60 * 60;
const SECONDS_PER_DAY: i64 = 24 * SECONDS_PER_HOUR;

/// Query of the usage read, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub granularity: Option<String>,
}

/// How finely usage is bucketed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    #[default]
    Hour,
    /// UTC days.
    Day,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    fn seconds(self) -> i64 {
        match self {
            Granularity::Hour => SECONDS_PER_HOUR,
            Granularity::Day => SECONDS_PER_DAY,
        }
    }
}

/// A validated read: hours overlapping `[from, to)`, bucketed by `granularity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: Granularity,
}

impl UsageRange {
    /// Unix seconds `[first, end)` of the hour starts to read: every hour overlapping the range.
    pub fn hour_starts(&self) -> (i64, i64) {
        let from = self.from.timestamp();
        (
            from - from.rem_euclid(SECONDS_PER_HOUR),
            self.to.timestamp(),
        )
    }
}

/// Requests, allowed and denied by code, and what became of the allowed ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub allowed: u64,
    /// Only codes with a non-zero count.
    pub denied: BTreeMap<String, u64>,
    pub total: u64,
    /// Allowed requests by what the upstream did: every class of `UPSTREAM_CLASSES`. Requests
    /// counted by a filter that did not report it yet are in no class.
    #[serde(default)]
    pub upstream: BTreeMap<String, u64>,
    /// Percentiles of the allowed requests' durations; absent without samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Percentiles>,
    /// Requests by route name (`other`: matching no route).
    #[serde(default)]
    pub routes: BTreeMap<String, RouteUsage>,
    /// Events proxies left out of their reports (still counted above).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub events_dropped: u64,
    /// The merged duration histogram the percentiles are read from.
    #[serde(skip)]
    pub(crate) latency_buckets: BTreeMap<usize, u64>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Duration percentiles in milliseconds, each the middle of the histogram bucket holding it
/// (within 6.25 % of the exact value: `contract::latency`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// One route's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteUsage {
    pub allowed: u64,
    pub denied: BTreeMap<String, u64>,
    pub total: u64,
}

fn add_to(sum: &mut u64, count: u64) {
    *sum = sum.saturating_add(count);
}

impl Counts {
    fn add(&mut self, code: &str, count: u64) {
        match StoredCode::decode(code) {
            Some(StoredCode::Allowed) => {
                add_to(&mut self.allowed, count);
                add_to(&mut self.total, count);
            }
            Some(StoredCode::Denied(code)) => {
                add_to(self.denied.entry(code.to_string()).or_default(), count);
                add_to(&mut self.total, count);
            }
            Some(StoredCode::Upstream(class)) => {
                add_to(self.upstream.entry(class.to_string()).or_default(), count)
            }
            Some(StoredCode::Latency(bucket)) => {
                add_to(self.latency_buckets.entry(bucket).or_default(), count)
            }
            Some(StoredCode::Route(name, code)) => {
                let route = self.routes.entry(name.to_string()).or_default();
                match code {
                    None => add_to(&mut route.allowed, count),
                    Some(code) => add_to(route.denied.entry(code.to_string()).or_default(), count),
                }
                add_to(&mut route.total, count);
            }
            Some(StoredCode::EventsDropped) => add_to(&mut self.events_dropped, count),
            None => {}
        }
    }

    /// Reads the percentiles from the merged histogram and lists every upstream class.
    fn finish(mut self) -> Counts {
        for class in UPSTREAM_CLASSES {
            self.upstream.entry(class.to_string()).or_default();
        }
        let buckets = &self.latency_buckets;
        self.latency_ms = match (
            latency::quantile(buckets, 0.50),
            latency::quantile(buckets, 0.95),
            latency::quantile(buckets, 0.99),
        ) {
            (Some(p50), Some(p95), Some(p99)) => Some(Percentiles { p50, p95, p99 }),
            _ => None,
        };
        self
    }
}

/// The counts of one hour or day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub start: String,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Non-empty buckets oldest first, and their sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageSummary {
    pub buckets: Vec<Bucket>,
    pub totals: Counts,
}

/// Checks the query; `now` is the default end.
pub fn validate(query: &UsageQuery, now: DateTime<Utc>) -> Result<UsageRange, FieldError> {
    let granularity = match query.granularity.as_deref() {
        None | Some("hour") => Granularity::Hour,
        Some("day") => Granularity::Day,
        Some(other) => {
            return Err(FieldError::new(
                "granularity",
                format!("must be hour or day, not {other:?}"),
            ))
        }
    };
    let to = instant("to", query.to.as_deref())?.unwrap_or(now);
    let from = instant("from", query.from.as_deref())?
        .unwrap_or(to - Duration::hours(DEFAULT_RANGE_HOURS));
    if from >= to {
        return Err(FieldError::new("from", "must be before to"));
    }
    if to - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(FieldError::new(
            "to",
            format!("must be at most {MAX_RANGE_DAYS} days after from"),
        ));
    }
    Ok(UsageRange {
        from,
        to,
        granularity,
    })
}

fn instant(field: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, FieldError> {
    text.map(|text| {
        clock::parse(text).ok_or_else(|| {
            FieldError::new(
                field,
                format!("{text:?} is not an RFC 3339 instant such as 2026-11-23T21:00:00Z"),
            )
        })
    })
    .transpose()
}

/// Sums `rows` (ordered by hour) into buckets of `granularity`.
pub fn summarize(rows: &[HourCount], granularity: Granularity) -> UsageSummary {
    let mut summary = UsageSummary::default();
    let mut current: Option<(i64, Counts)> = None;
    let width = granularity.seconds();
    for row in rows {
        let start = row.hour_start - row.hour_start.rem_euclid(width);
        if current.as_ref().is_some_and(|(open, _)| *open != start) {
            summary.buckets.extend(current.take().map(bucket));
        }
        current
            .get_or_insert_with(|| (start, Counts::default()))
            .1
            .add(&row.code, row.count);
        summary.totals.add(&row.code, row.count);
    }
    summary.buckets.extend(current.map(bucket));
    summary.buckets.retain(|bucket| bucket.counts.total > 0);
    summary.totals = summary.totals.finish();
    summary
}

fn bucket((start, counts): (i64, Counts)) -> Bucket {
    Bucket {
        start: DateTime::from_timestamp(start, 0).map_or_else(|| start.to_string(), clock::format),
        counts: counts.finish(),
    }
}

#[cfg(test)]
mod tests {
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
        let hourly = summarize(&rows, Granularity::Hour);
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
        let daily = summarize(&rows, Granularity::Day);
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
        assert_eq!(summarize(&[], Granularity::Day).buckets, []);
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
        let summary = summarize(&rows, Granularity::Hour);
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
}
