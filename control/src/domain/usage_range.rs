//! The usage read (`GET /v1/keys/{id}/usage`) as pure functions: its query validated into a
//! range, and stored hours summed into hour or UTC-day buckets.

use crate::domain::clock;
use crate::domain::usage_report::ALLOWED_CODE;
use chrono::{DateTime, Duration, Utc};
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

/// Requests, allowed and denied by code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub allowed: u64,
    /// Only codes with a non-zero count.
    pub denied: BTreeMap<String, u64>,
    pub total: u64,
}

impl Counts {
    fn add(&mut self, code: &str, count: u64) {
        if code == ALLOWED_CODE {
            self.allowed = self.allowed.saturating_add(count);
        } else {
            let denied = self.denied.entry(code.to_string()).or_default();
            *denied = denied.saturating_add(count);
        }
        self.total = self.total.saturating_add(count);
    }
}

/// The counts of one hour or day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub start: String,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Non-empty buckets oldest first, and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
    summary
}

fn bucket((start, counts): (i64, Counts)) -> Bucket {
    Bucket {
        start: DateTime::from_timestamp(start, 0).map_or_else(|| start.to_string(), clock::format),
        counts,
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
                "denied": {"RATE_LIMIT_EXCEEDED": 1}, "total": 6})
        );
        assert_eq!(summarize(&[], Granularity::Day), UsageSummary::default());
    }
}
