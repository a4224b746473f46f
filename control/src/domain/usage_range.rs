//! The usage read (`GET /v1/keys/{id}/usage`) as pure functions: its query validated into a
//! range, and stored hours summed into hour or UTC-day buckets.

use crate::domain::clock;
use crate::domain::usage_report::StoredCode;
use chrono::{DateTime, Duration, Utc};
use keygate_contract::usage::UPSTREAM_CLASSES;
use keygate_contract::FieldError;
use keygate_contract::{ip_sketch, latency};
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
    /// Distinct client addresses (estimated) and the most frequent ones; absent when no proxy
    /// reported addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ips: Option<ClientIps>,
    /// The merged duration histogram the percentiles are read from.
    #[serde(skip)]
    pub(crate) latency_buckets: BTreeMap<usize, u64>,
    /// The merged address sketch and the top addresses' requests.
    #[serde(skip)]
    pub(crate) ip_registers: BTreeMap<u8, u8>,
    #[serde(skip)]
    pub(crate) top_ips: BTreeMap<String, u64>,
}

/// Client addresses of a bucket: how many distinct (HyperLogLog: ±13 % for 95 % of
/// estimates), the most frequent (requests are lower bounds), and whether the bucket saw many
/// more than the key's recent normal (see [`flag_unusual`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientIps {
    pub distinct: u64,
    pub top: Vec<IpCount>,
    pub unusual: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpCount {
    pub ip: String,
    pub requests: u64,
}

/// Addresses listed per bucket.
const TOP_IPS_SHOWN: usize = 5;
/// A bucket is unusual with more distinct addresses than this many times the median of the
/// earlier buckets of the read (at least [`BASELINE_BUCKETS`] of them), and more than
/// [`UNUSUAL_MIN_IPS`].
const UNUSUAL_FACTOR: u64 = 4;
const BASELINE_BUCKETS: usize = 3;
const UNUSUAL_MIN_IPS: u64 = 20;

/// One stored sketch register: hour, register, value (merged by maximum).
pub type SketchRow = (i64, u8, u8);

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
            Some(StoredCode::ClientIp(ip)) => {
                add_to(self.top_ips.entry(ip.to_string()).or_default(), count)
            }
            None => {}
        }
    }

    fn add_register(&mut self, register: u8, value: u8) {
        let held = self.ip_registers.entry(register).or_default();
        *held = (*held).max(value);
    }

    /// Reads the percentiles from the merged histogram and lists every upstream class.
    fn finish(mut self) -> Counts {
        if !self.ip_registers.is_empty() || !self.top_ips.is_empty() {
            let mut top: Vec<IpCount> = self
                .top_ips
                .iter()
                .map(|(ip, requests)| IpCount {
                    ip: ip.clone(),
                    requests: *requests,
                })
                .collect();
            top.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.ip.cmp(&b.ip)));
            top.truncate(TOP_IPS_SHOWN);
            let distinct = ip_sketch::estimate(self.ip_registers.iter().map(|(r, v)| (*r, *v)));
            self.client_ips = Some(ClientIps {
                distinct: distinct.max(top.len() as u64),
                top,
                unusual: false,
            });
        }
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

/// Sums `rows` (ordered by hour) into buckets of `granularity`, with the address sketches of
/// the same hours merged into them.
pub fn summarize(
    rows: &[HourCount],
    sketches: &[SketchRow],
    granularity: Granularity,
) -> UsageSummary {
    let width = granularity.seconds();
    let mut registers: BTreeMap<i64, Vec<(u8, u8)>> = BTreeMap::new();
    for &(hour, register, value) in sketches {
        registers
            .entry(hour - hour.rem_euclid(width))
            .or_default()
            .push((register, value));
    }
    let mut summary = UsageSummary::default();
    let mut current: Option<(i64, Counts)> = None;
    for held in registers.values() {
        for &(register, value) in held {
            summary.totals.add_register(register, value);
        }
    }
    for row in rows {
        let start = row.hour_start - row.hour_start.rem_euclid(width);
        if current.as_ref().is_some_and(|(open, _)| *open != start) {
            summary.buckets.extend(current.take().map(bucket));
        }
        current
            .get_or_insert_with(|| {
                let mut counts = Counts::default();
                for &(register, value) in registers.get(&start).into_iter().flatten() {
                    counts.add_register(register, value);
                }
                (start, counts)
            })
            .1
            .add(&row.code, row.count);
        summary.totals.add(&row.code, row.count);
    }
    summary.buckets.extend(current.map(bucket));
    summary.buckets.retain(|bucket| bucket.counts.total > 0);
    summary.totals = summary.totals.finish();
    flag_unusual(&mut summary);
    summary
}

/// Flags the buckets seen from many more client addresses than the key's recent normal: more
/// than `UNUSUAL_MIN_IPS` and `UNUSUAL_FACTOR` times the median of the earlier buckets of the
/// read (once there are `BASELINE_BUCKETS` of them). The totals are unusual when a bucket is.
pub fn flag_unusual(summary: &mut UsageSummary) {
    let mut earlier: Vec<u64> = Vec::new();
    let mut any = false;
    for bucket in &mut summary.buckets {
        let Some(ips) = bucket.counts.client_ips.as_mut() else {
            continue;
        };
        if earlier.len() >= BASELINE_BUCKETS {
            let mut sorted = earlier.clone();
            sorted.sort_unstable();
            let median = sorted[sorted.len() / 2];
            ips.unusual = ips.distinct > UNUSUAL_MIN_IPS && ips.distinct > UNUSUAL_FACTOR * median;
            any |= ips.unusual;
        }
        earlier.push(ips.distinct);
    }
    if let Some(ips) = summary.totals.client_ips.as_mut() {
        ips.unusual = any;
    }
}

fn bucket((start, counts): (i64, Counts)) -> Bucket {
    Bucket {
        start: DateTime::from_timestamp(start, 0).map_or_else(|| start.to_string(), clock::format),
        counts: counts.finish(),
    }
}

#[cfg(test)]
mod tests;
