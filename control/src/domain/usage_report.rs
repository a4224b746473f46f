//! Usage report bodies as proxies send them (`POST /v1/usage`), and their validation into a
//! batch the store can count. Every error names the field, e.g. `reports[3].hour: …`.

use crate::domain::clock;
use chrono::{DateTime, Duration, Timelike, Utc};
use keygate_contract::latency;
use keygate_contract::usage::{
    clip, route_name, UsageEvent, MAX_EVENTS_PER_REPORT, MAX_EVENT_FIELD_BYTES,
    MAX_EVENT_PATH_BYTES, MAX_ROUTES_PER_REPORT, UPSTREAM_CLASSES,
};
use keygate_contract::FieldError;

/// Reports one body may carry.
pub const MAX_REPORTS: usize = 10_000;
const MAX_CODE_CHARS: usize = 64;
/// Per count in one report: far above what a proxy admits in one interval, and low enough that
/// no number of batches a fleet can send overflows SQLite's 64-bit sums.
pub const MAX_COUNT: u64 = 1_000_000_000_000;
/// How `allowed` is stored beside the denial codes; reserved, so not a denial code.
pub const ALLOWED_CODE: &str = "ALLOWED";
/// Denial codes one route of a report may carry.
const MAX_CODES_PER_ROUTE: usize = 16;

/// Body of `POST /v1/usage`: the filter's own message type, read tolerantly (unknown fields
/// are ignored so a filter newer than this service never has its usage refused).
pub use keygate_contract::usage::{UsagePost as UsageRequest, UsageReport as RawReport};

/// A validated batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageBatch {
    pub proxy_id: String,
    pub batch_id: String,
    pub reports: Vec<HourlyUsage>,
}

/// One key's non-zero counts for one hour, by stored code ([`StoredCode`]), and its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyUsage {
    pub key_id: String,
    /// Unix seconds of the UTC hour start.
    pub hour_start: i64,
    pub counts: Vec<(String, u64)>,
    pub events: Vec<KeyEvent>,
}

/// A request worth looking at, as stored: a denial or a failed upstream answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    /// Unix milliseconds of the request's start.
    pub at_ms: i64,
    /// The error code of a denial, or `5xx` / `none`.
    pub outcome: String,
    /// The HTTP status the client got (0 for none).
    pub status: u32,
    pub method: String,
    pub path: String,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub proxy_id: String,
}

/// What one row of hourly counts holds, by its `code` column: every count of a report is a row
/// of the same table, so all of them roll up into days, sum over a team's keys and merge
/// across proxies the same way. Denial codes are upper case; the detail codes hold a `/`, which
/// neither a denial code nor a route name can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredCode<'a> {
    Allowed,
    Denied(&'a str),
    /// Allowed requests the upstream answered with this class (`2xx`, …, `none`).
    Upstream(&'a str),
    /// Allowed requests whose duration fell in this `contract::latency` bucket.
    Latency(usize),
    /// A route's requests: allowed (`None`) or denied with a code.
    Route(&'a str, Option<&'a str>),
    /// Events a proxy left out of its reports.
    EventsDropped,
}

const UPSTREAM_PREFIX: &str = "up/";
const LATENCY_PREFIX: &str = "ms/";
const ROUTE_PREFIX: &str = "route/";
const EVENTS_DROPPED: &str = "ev/dropped";

impl StoredCode<'_> {
    pub fn encode(self) -> String {
        match self {
            StoredCode::Allowed => ALLOWED_CODE.to_string(),
            StoredCode::Denied(code) => code.to_string(),
            StoredCode::Upstream(class) => format!("{UPSTREAM_PREFIX}{class}"),
            StoredCode::Latency(bucket) => format!("{LATENCY_PREFIX}{bucket}"),
            StoredCode::Route(name, None) => format!("{ROUTE_PREFIX}{name}"),
            StoredCode::Route(name, Some(code)) => format!("{ROUTE_PREFIX}{name}/{code}"),
            StoredCode::EventsDropped => EVENTS_DROPPED.to_string(),
        }
    }

    /// What a stored code holds; `None` for a code this build does not know (left out of reads).
    pub fn decode(code: &str) -> Option<StoredCode<'_>> {
        if code == ALLOWED_CODE {
            return Some(StoredCode::Allowed);
        }
        if is_denial_code(code) {
            return Some(StoredCode::Denied(code));
        }
        if code == EVENTS_DROPPED {
            return Some(StoredCode::EventsDropped);
        }
        if let Some(class) = code.strip_prefix(UPSTREAM_PREFIX) {
            return UPSTREAM_CLASSES
                .contains(&class)
                .then_some(StoredCode::Upstream(class));
        }
        if let Some(bucket) = code.strip_prefix(LATENCY_PREFIX) {
            return bucket
                .parse()
                .ok()
                .filter(|bucket| *bucket < latency::BUCKETS)
                .map(StoredCode::Latency);
        }
        let route = code.strip_prefix(ROUTE_PREFIX)?;
        Some(match route.split_once('/') {
            Some((name, code)) => StoredCode::Route(name, Some(code)),
            None => StoredCode::Route(route, None),
        })
    }
}

/// Checks a body against the contract; `now` bounds how far ahead an hour may be. The counts a
/// filter has always sent are checked strictly (a bad one refuses the body, naming it); the
/// detail added later (upstream classes, durations, routes, events) is read tolerantly: an
/// entry this build cannot use is left out and the rest of the report still counts.
pub fn validate(request: UsageRequest, now: DateTime<Utc>) -> Result<UsageBatch, FieldError> {
    let proxy_id = identifier("proxy_id", request.proxy_id)?;
    let proxy = proxy_id.clone();
    let batch_id = identifier("batch_id", request.batch_id)?;
    if request.reports.len() > MAX_REPORTS {
        return Err(FieldError::new(
            "reports",
            format!("must hold at most {MAX_REPORTS} reports"),
        ));
    }
    let reports = request
        .reports
        .into_iter()
        .enumerate()
        .map(|(index, report)| hourly_usage(&format!("reports[{index}]"), report, now, &proxy))
        .collect::<Result<_, _>>()?;
    Ok(UsageBatch {
        proxy_id,
        batch_id,
        reports,
    })
}

/// A proxy or batch id: the same rule as any identifier in a key record.
fn identifier(field: &str, value: String) -> Result<String, FieldError> {
    keygate_contract::fields::identifier(field, &value)?;
    Ok(value)
}

fn hourly_usage(
    field: &str,
    mut report: RawReport,
    now: DateTime<Utc>,
    proxy_id: &str,
) -> Result<HourlyUsage, FieldError> {
    let hour = hour_start(&report.hour, now).map_err(|message| {
        FieldError::new(
            format!("{field}.hour"),
            format!("{:?} {message}", report.hour),
        )
    })?;
    let mut counts = Vec::with_capacity(report.denied.len() + 1);
    counts.push((
        ALLOWED_CODE.to_string(),
        count(format!("{field}.allowed"), report.allowed)?,
    ));
    for (code, value) in std::mem::take(&mut report.denied) {
        let code_field = format!("{field}.denied.{code}");
        if !is_denial_code(&code) {
            return Err(FieldError::new(
                format!("{field}.denied"),
                format!("{code:?} is not an error code (1 to {MAX_CODE_CHARS} of A-Z and _)"),
            ));
        }
        if code == ALLOWED_CODE {
            return Err(FieldError::new(code_field, "is not a denial code"));
        }
        let value = count(code_field, value)?;
        counts.push((code, value));
    }
    add_detail(&mut counts, &report);
    counts.retain(|(_, value)| *value > 0);
    let events = report
        .events
        .into_iter()
        .take(MAX_EVENTS_PER_REPORT)
        .filter_map(|event| key_event(event, now, proxy_id))
        .collect();
    Ok(HourlyUsage {
        key_id: report.key_id,
        hour_start: hour.timestamp(),
        counts,
        events,
    })
}

/// The detail counts of a report that this build can store; the rest is left out.
fn add_detail(counts: &mut Vec<(String, u64)>, report: &RawReport) {
    let mut push = |code: StoredCode<'_>, value: u64| {
        if value > 0 && value <= MAX_COUNT {
            counts.push((code.encode(), value));
        }
    };
    for (class, value) in &report.upstream {
        if UPSTREAM_CLASSES.contains(&class.as_str()) {
            push(StoredCode::Upstream(class), *value);
        }
    }
    for (bucket, value) in &report.latency_buckets {
        if *bucket < latency::BUCKETS {
            push(StoredCode::Latency(*bucket), *value);
        }
    }
    for (name, route) in report.routes.iter().take(MAX_ROUTES_PER_REPORT) {
        if route_name("route", name).is_err() {
            continue;
        }
        push(StoredCode::Route(name, None), route.allowed);
        for (code, value) in route.denied.iter().take(MAX_CODES_PER_ROUTE) {
            if is_denial_code(code) && code != ALLOWED_CODE {
                push(StoredCode::Route(name, Some(code)), *value);
            }
        }
    }
    push(StoredCode::EventsDropped, report.events_dropped);
}

/// An event as stored, or `None` for one without a usable time or outcome. Its text fields are
/// cut to their bounds and an address that does not parse is left out.
fn key_event(event: UsageEvent, now: DateTime<Utc>, proxy_id: &str) -> Option<KeyEvent> {
    let at = DateTime::from_timestamp_millis(i64::try_from(event.at_ms).ok()?)?;
    if at > now + Duration::hours(1) {
        return None;
    }
    let known_outcome =
        is_denial_code(&event.outcome) || ["5xx", "none"].contains(&event.outcome.as_str());
    if !known_outcome || event.status > 999 {
        return None;
    }
    let printable = |text: &str, max: usize| {
        let text = clip(text, max);
        (!text.is_empty() && !text.chars().any(char::is_control)).then(|| text.to_string())
    };
    Some(KeyEvent {
        at_ms: at.timestamp_millis(),
        outcome: event.outcome,
        status: event.status,
        method: printable(&event.method, MAX_EVENT_FIELD_BYTES).unwrap_or_default(),
        path: printable(&event.path, MAX_EVENT_PATH_BYTES).unwrap_or_default(),
        client_ip: event
            .client_ip
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
            .map(|ip| keygate_contract::fields::canonical_ip(ip).to_string()),
        request_id: event
            .request_id
            .and_then(|id| printable(&id, MAX_EVENT_FIELD_BYTES)),
        proxy_id: proxy_id.to_string(),
    })
}

fn count(field: String, value: u64) -> Result<u64, FieldError> {
    if value > MAX_COUNT {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_COUNT}"),
        ));
    }
    Ok(value)
}

/// Upper-case error codes such as `RATE_LIMIT_EXCEEDED`; codes we do not know are fine.
pub fn is_denial_code(code: &str) -> bool {
    (1..=MAX_CODE_CHARS).contains(&code.len())
        && code
            .bytes()
            .all(|byte| byte.is_ascii_uppercase() || byte == b'_')
}

/// Whether `instant` is the first instant of a UTC hour.
pub fn is_hour_start(instant: DateTime<Utc>) -> bool {
    instant.minute() == 0 && instant.second() == 0 && instant.nanosecond() == 0
}

/// The hour a report is for: an RFC 3339 UTC hour start, at most one hour after `now` (a
/// proxy's clock may run a little ahead of ours).
pub fn hour_start(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, &'static str> {
    let instant =
        clock::parse(text).ok_or("is not an RFC 3339 instant such as 2026-11-23T21:00:00Z")?;
    if !is_hour_start(instant) {
        return Err("is not the start of a UTC hour (minutes and seconds must be zero)");
    }
    if instant > now + Duration::hours(1) {
        return Err("is more than one hour in the future");
    }
    Ok(instant)
}

/// What a usage POST did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Reports counted (for keys that exist and are not deleted).
    pub accepted: u32,
    /// Reports dropped because their key is unknown or deleted.
    pub unknown_keys: u32,
    /// The batch id was seen before: nothing was counted now, the numbers are the first time's.
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        clock::parse("2026-11-23T21:15:00Z").unwrap()
    }

    fn check(json: &str) -> Result<UsageBatch, FieldError> {
        validate(serde_json::from_str(json).unwrap(), now())
    }

    fn body(reports: &str) -> String {
        format!(r#"{{"proxy_id":"p1","batch_id":"p1-1","reports":[{reports}]}}"#)
    }

    #[test]
    fn hour_alignment_and_horizon() {
        let cases = [
            ("2026-11-23T21:00:00Z", Ok("2026-11-23T21:00:00Z")),
            ("2026-11-23T22:00:00Z", Ok("2026-11-23T22:00:00Z")),
            ("2026-11-23T23:00:00+01:00", Ok("2026-11-23T22:00:00Z")),
            ("2020-01-01T00:00:00Z", Ok("2020-01-01T00:00:00Z")),
            (
                "2026-11-23T23:00:00Z",
                Err("is more than one hour in the future"),
            ),
            (
                "2026-11-23T21:30:00Z",
                Err("is not the start of a UTC hour"),
            ),
            (
                "2026-11-23T21:00:01Z",
                Err("is not the start of a UTC hour"),
            ),
            (
                "2026-11-23T21:00:00.5Z",
                Err("is not the start of a UTC hour"),
            ),
            (
                "2026-11-23T21:00:00+05:30",
                Err("is not the start of a UTC hour"),
            ),
            ("2026-11-23 21:00", Err("is not an RFC 3339 instant")),
        ];
        for (text, expected) in cases {
            match (hour_start(text, now()), expected) {
                (Ok(instant), Ok(want)) => assert_eq!(clock::format(instant), want, "{text}"),
                (Err(message), Err(want)) => assert!(message.starts_with(want), "{text}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn keeps_non_zero_counts_by_code() {
        let batch = check(&body(
            r#"{"key_id":"key_a","hour":"2026-11-23T21:00:00Z","allowed":8,
                "denied":{"RATE_LIMIT_EXCEEDED":2,"QUOTA_EXCEEDED":0,"SOMETHING_NEW":1}}"#,
        ))
        .unwrap();
        assert_eq!(batch.proxy_id, "p1");
        assert_eq!(
            batch.reports,
            vec![HourlyUsage {
                key_id: "key_a".into(),
                hour_start: now().timestamp() - 15 * 60,
                counts: vec![
                    ("ALLOWED".into(), 8),
                    ("RATE_LIMIT_EXCEEDED".into(), 2),
                    ("SOMETHING_NEW".into(), 1),
                ],
                events: vec![],
            }]
        );
    }

    #[test]
    fn detail_is_stored_as_codes_and_bad_detail_left_out() {
        let batch = check(&body(
            r#"{"key_id":"key_a","hour":"2026-11-23T21:00:00Z","allowed":3,
                "upstream":{"2xx":2,"5xx":1,"6xx":9},
                "latency_buckets":{"12":2,"40":1,"999":4},
                "routes":{"jobs:write":{"allowed":3,"denied":{"QUOTA_EXCEEDED":1,"bad":1}},
                          "a/b":{"allowed":1}},
                "events":[{"at_ms":1795468500000,"outcome":"5xx","status":503,"method":"POST",
                           "path":"/v1/jobs","client_ip":"::ffff:192.0.2.1","request_id":"r1"},
                          {"at_ms":1795468500000,"outcome":"weird"},
                          {"at_ms":1895468500000,"outcome":"none"}],
                "events_dropped":4}"#,
        ))
        .unwrap();
        let report = &batch.reports[0];
        let codes: Vec<&str> = report
            .counts
            .iter()
            .map(|(code, _)| code.as_str())
            .collect();
        assert_eq!(
            codes,
            [
                "ALLOWED",
                "up/2xx",
                "up/5xx",
                "ms/12",
                "ms/40",
                "route/jobs:write",
                "route/jobs:write/QUOTA_EXCEEDED",
                "ev/dropped"
            ]
        );
        for code in &codes {
            assert!(StoredCode::decode(code).is_some(), "{code}");
        }
        assert_eq!(
            StoredCode::decode("route/jobs:write/QUOTA_EXCEEDED"),
            Some(StoredCode::Route("jobs:write", Some("QUOTA_EXCEEDED")))
        );
        assert_eq!(StoredCode::decode("ms/144"), None);
        assert_eq!(
            report.events.len(),
            1,
            "an unknown outcome and a far future time are left out"
        );
        let event = &report.events[0];
        assert_eq!(event.at_ms, 1_795_468_500_000);
        assert_eq!(event.client_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(event.proxy_id, "p1");
    }

    #[test]
    fn errors_name_the_field() {
        let report = |rest: &str| {
            body(&format!(
                r#"{{"key_id":"k","hour":"2026-11-23T21:00:00Z","allowed":1{rest}}}"#
            ))
        };
        let cases = [
            (
                r#"{"proxy_id":"","batch_id":"b","reports":[]}"#.to_string(),
                "proxy_id: must not be empty",
            ),
            (
                format!(
                    r#"{{"proxy_id":"p","batch_id":"{}","reports":[]}}"#,
                    "b".repeat(129)
                ),
                "batch_id: must be at most 128",
            ),
            (
                r#"{"proxy_id":"p\nq","batch_id":"b","reports":[]}"#.to_string(),
                "proxy_id: must not contain control characters",
            ),
            (
                report(r#","denied":{"rate_limit":1}"#),
                "reports[0].denied: \"rate_limit\" is not an error code",
            ),
            (
                report(r#","denied":{"ALLOWED":1}"#),
                "reports[0].denied.ALLOWED: is not a denial code",
            ),
            (
                report(r#","denied":{"QUOTA_EXCEEDED":1000000000001}"#),
                "reports[0].denied.QUOTA_EXCEEDED: must be at most",
            ),
            (
                body(r#"{"key_id":"k","hour":"2026-11-23T21:05:00Z","allowed":1}"#),
                "reports[0].hour: \"2026-11-23T21:05:00Z\" is not the start",
            ),
        ];
        for (json, expected) in cases {
            let message = check(&json).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{json} gave {message}");
        }
    }

    #[test]
    fn caps_the_number_of_reports() {
        let one = r#"{"key_id":"k","hour":"2026-11-23T21:00:00Z","allowed":1}"#;
        let at_cap = vec![one; MAX_REPORTS].join(",");
        assert_eq!(check(&body(&at_cap)).unwrap().reports.len(), MAX_REPORTS);
        let over = vec![one; MAX_REPORTS + 1].join(",");
        assert_eq!(check(&body(&over)).unwrap_err().field, "reports");
    }

    #[test]
    fn denial_codes() {
        for good in ["RATE_LIMIT_EXCEEDED", "X", "_", &"A".repeat(64)] {
            assert!(is_denial_code(good), "{good}");
        }
        for bad in ["", "rate", "RATE-LIMIT", "CODE1", &"A".repeat(65), "É"] {
            assert!(!is_denial_code(bad), "{bad}");
        }
    }
}
