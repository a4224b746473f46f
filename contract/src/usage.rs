//! Usage reports as the filter posts them and the control service counts them
//! (`POST /v1/usage`). Read tolerantly: unknown fields are ignored, so either side can be
//! upgraded first and a field added in a rolling upgrade never drops usage (and with it quota
//! enforcement).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The denial codes of a request refused for going over a rate or concurrency limit: the
/// filter answers them, the control service's `ratelimit.refusals` alert counts them.
pub const RATE_LIMIT_EXCEEDED: &str = "RATE_LIMIT_EXCEEDED";
pub const CONCURRENCY_LIMIT_EXCEEDED: &str = "CONCURRENCY_LIMIT_EXCEEDED";
pub const RATE_LIMIT_REFUSAL_CODES: [&str; 2] = [RATE_LIMIT_EXCEEDED, CONCURRENCY_LIMIT_EXCEEDED];

/// Body of `POST /v1/usage`: one Envoy's counts since its last post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsagePost {
    /// Which Envoy sent it.
    pub proxy_id: String,
    /// Unique per batch and kept across retries, so a retried batch is counted once.
    pub batch_id: String,
    pub reports: Vec<UsageReport>,
}

/// One key's usage in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageReport {
    pub key_id: String,
    /// RFC 3339 start of the UTC hour.
    pub hour: String,
    pub allowed: u64,
    /// Denied requests by error code (`RATE_LIMIT_EXCEEDED`, …).
    #[serde(default)]
    pub denied: BTreeMap<String, u64>,
    /// Allowed requests by what the upstream did: a class of [`UPSTREAM_CLASSES`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstream: BTreeMap<String, u64>,
    /// Durations of allowed requests: [`crate::latency`] bucket index → requests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_buckets: BTreeMap<usize, u64>,
    /// Requests by route name (see [`route_name`]); requests matching no route under
    /// [`OTHER_ROUTE`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, RouteCounts>,
    /// Denials and failed upstream answers, at most [`MAX_EVENTS_PER_REPORT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<UsageEvent>,
    /// Events left out of `events` (they still count in the numbers above).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub events_dropped: u64,
    /// The client addresses seen, as the non-zero registers of a [`crate::ip_sketch`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ip_sketch: BTreeMap<u8, u8>,
    /// The most frequent client addresses and their requests (at most [`MAX_TOP_IPS`]; counts
    /// are lower bounds when more addresses were seen).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub top_ips: BTreeMap<String, u64>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// One route's requests in a report.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RouteCounts {
    #[serde(default)]
    pub allowed: u64,
    #[serde(default)]
    pub denied: BTreeMap<String, u64>,
}

/// One request worth looking at: a denial of a known key, or an allowed request the upstream
/// failed (`5xx`) or never answered (`none`). Never the key, never a header value but the
/// request id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageEvent {
    /// Unix milliseconds of the request's start.
    pub at_ms: u64,
    /// The error code of a denial, or the upstream class (`5xx`, `none`).
    pub outcome: String,
    /// The HTTP status the client got (0 when it got none).
    #[serde(default)]
    pub status: u32,
    #[serde(default)]
    pub method: String,
    /// The path without its query string, at most [`MAX_EVENT_PATH_BYTES`].
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl UsageReport {
    /// Adds `other` (the same key and hour) to this report: counts summed, events kept up to
    /// [`MAX_EVENTS_PER_REPORT`] (the rest counted as dropped), route names beyond
    /// [`MAX_ROUTES_PER_REPORT`] counted under [`OTHER_ROUTE`].
    pub fn add(&mut self, other: UsageReport) {
        self.allowed = self.allowed.saturating_add(other.allowed);
        add_counts(&mut self.denied, other.denied);
        add_counts(&mut self.upstream, other.upstream);
        for (bucket, count) in other.latency_buckets {
            let sum = self.latency_buckets.entry(bucket).or_default();
            *sum = sum.saturating_add(count);
        }
        for (name, counts) in other.routes {
            let full =
                self.routes.len() >= MAX_ROUTES_PER_REPORT && !self.routes.contains_key(&name);
            let name = if full { OTHER_ROUTE.to_string() } else { name };
            let route = self.routes.entry(name).or_default();
            route.allowed = route.allowed.saturating_add(counts.allowed);
            add_counts(&mut route.denied, counts.denied);
        }
        for (register, value) in other.ip_sketch {
            let held = self.ip_sketch.entry(register).or_default();
            *held = (*held).max(value);
        }
        add_counts(&mut self.top_ips, other.top_ips);
        if self.top_ips.len() > MAX_TOP_IPS {
            let mut ranked: Vec<(String, u64)> =
                std::mem::take(&mut self.top_ips).into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            ranked.truncate(MAX_TOP_IPS);
            self.top_ips = ranked.into_iter().collect();
        }
        self.events_dropped = self.events_dropped.saturating_add(other.events_dropped);
        for event in other.events {
            if self.events.len() < MAX_EVENTS_PER_REPORT {
                self.events.push(event);
            } else {
                self.events_dropped = self.events_dropped.saturating_add(1);
            }
        }
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (name, count) in from {
        let sum = into.entry(name).or_default();
        *sum = sum.saturating_add(count);
    }
}

/// What the upstream did with an allowed request, as counted in `upstream`.
pub const UPSTREAM_CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "none"];
/// The class for no answer: reset, timeout, client gone.
pub const NO_RESPONSE: &str = "none";
/// The route name of requests no `routes` entry matches.
pub const OTHER_ROUTE: &str = "other";
/// The name of a route without a `name` or a scope.
pub const UNSCOPED_ROUTE: &str = "unscoped";
/// Route names one report may carry; more are counted under [`OTHER_ROUTE`].
pub const MAX_ROUTES_PER_REPORT: usize = 64;
/// Client addresses one report names with their counts.
pub const MAX_TOP_IPS: usize = 5;
/// Events one report (one key, one hour, one post) carries at most.
pub const MAX_EVENTS_PER_REPORT: usize = 20;
/// An event's path is cut to this many bytes (at a character boundary).
pub const MAX_EVENT_PATH_BYTES: usize = 512;
/// Methods and request ids in events are cut to this many bytes.
pub const MAX_EVENT_FIELD_BYTES: usize = 200;

/// The class of an upstream status (1xx counts as `2xx`: a protocol switch succeeded), `none`
/// for no status.
pub fn upstream_class(status: Option<u32>) -> &'static str {
    match status {
        Some(100..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => NO_RESPONSE,
    }
}

/// A route name: the scope rule (1 to 128 of `A-Z a-z 0-9 _ - . :`), so a route's default name
/// is its scope.
pub fn route_name(field: &str, name: &str) -> Result<(), crate::FieldError> {
    crate::fields::scope(field, name).map_err(|_| {
        crate::FieldError::new(
            field,
            format!("invalid route name {name:?}: 1 to 128 of A-Z a-z 0-9 _ - . :"),
        )
    })
}

/// `text` cut to at most `max` bytes at a character boundary.
pub fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_on_both_levels() {
        let body = br#"{"proxy_id":"p","batch_id":"b","added_later":1,
            "reports":[{"key_id":"k","hour":"2026-01-01T00:00:00Z","allowed":2,"region":"eu"}]}"#;
        let post: UsagePost = serde_json::from_slice(body).unwrap();
        assert_eq!(post.reports[0].allowed, 2);
        assert!(post.reports[0].denied.is_empty());
    }

    #[test]
    fn a_report_of_an_older_filter_reads_with_empty_detail() {
        let body = br#"{"key_id":"k","hour":"2026-01-01T00:00:00Z","allowed":2,"denied":{}}"#;
        let report: UsageReport = serde_json::from_slice(body).unwrap();
        assert!(report.upstream.is_empty() && report.routes.is_empty());
        assert!(report.latency_buckets.is_empty() && report.events.is_empty());
        let written = serde_json::to_string(&report).unwrap();
        assert!(!written.contains("upstream") && !written.contains("events"));
    }

    #[test]
    fn latency_buckets_travel_as_an_object() {
        let report = UsageReport {
            latency_buckets: BTreeMap::from([(3, 2), (40, 1)]),
            ..UsageReport::default()
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["latency_buckets"],
            serde_json::json!({"3": 2, "40": 1})
        );
        let back: UsageReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn adding_reports_sums_and_bounds() {
        let event = UsageEvent {
            outcome: "5xx".into(),
            ..UsageEvent::default()
        };
        let one = UsageReport {
            allowed: 2,
            upstream: BTreeMap::from([("2xx".into(), 1), ("5xx".into(), 1)]),
            latency_buckets: BTreeMap::from([(3, 2)]),
            routes: BTreeMap::from([(
                "jobs".into(),
                RouteCounts {
                    allowed: 2,
                    ..Default::default()
                },
            )]),
            events: vec![event.clone(); 15],
            ..UsageReport::default()
        };
        let mut sum = one.clone();
        sum.add(one);
        assert_eq!(sum.allowed, 4);
        assert_eq!(sum.upstream["5xx"], 2);
        assert_eq!(sum.latency_buckets[&3], 4);
        assert_eq!(sum.routes["jobs"].allowed, 4);
        assert_eq!(
            (sum.events.len(), sum.events_dropped),
            (MAX_EVENTS_PER_REPORT, 10)
        );
        let mut wide = UsageReport::default();
        for index in 0..MAX_ROUTES_PER_REPORT + 3 {
            wide.add(UsageReport {
                routes: BTreeMap::from([(
                    format!("r{index}"),
                    RouteCounts {
                        allowed: 1,
                        ..Default::default()
                    },
                )]),
                ..UsageReport::default()
            });
        }
        assert_eq!(wide.routes.len(), MAX_ROUTES_PER_REPORT + 1);
        assert_eq!(wide.routes[OTHER_ROUTE].allowed, 3);
    }

    #[test]
    fn classes_and_clipping() {
        let classes: Vec<&str> = [
            Some(101),
            Some(204),
            Some(302),
            Some(429),
            Some(503),
            None,
            Some(0),
        ]
        .into_iter()
        .map(upstream_class)
        .collect();
        assert_eq!(classes, ["2xx", "2xx", "3xx", "4xx", "5xx", "none", "none"]);
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("abc", 10), "abc");
        assert!(route_name("routes[0].name", "jobs:write").is_ok());
        assert!(route_name("routes[0].name", "a/b").is_err());
    }

    #[test]
    fn required_fields_stay_required() {
        assert!(serde_json::from_slice::<UsagePost>(br#"{"proxy_id":"p","reports":[]}"#).is_err());
        assert!(serde_json::from_slice::<UsageReport>(br#"{"key_id":"k","allowed":1}"#).is_err());
    }
}
