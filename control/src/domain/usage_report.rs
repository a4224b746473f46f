//! Usage report bodies as proxies send them (`POST /v1/usage`), and their validation into a
//! batch the store can count. Every error names the field, e.g. `reports[3].hour: …`.

use crate::domain::clock;
use crate::domain::plausibility::RefusedEntry;
use chrono::{DateTime, Duration, Timelike, Utc};
use keygate_contract::latency;
use keygate_contract::usage::{
    clip, route_name, UsageEvent, MAX_EVENTS_PER_REPORT, MAX_EVENT_FIELD_BYTES,
    MAX_EVENT_PATH_BYTES, MAX_ROUTES_PER_REPORT, MAX_TOP_IPS, UPSTREAM_CLASSES,
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
    /// The proxy's identity when it presented its own credential, else what it declared.
    pub proxy_id: String,
    /// The proxy identity that posted it (`None`: the shared sync token), so what it reported
    /// can be listed and discarded.
    pub reporter: Option<String>,
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
    /// The client addresses' sketch: non-zero registers (`contract::ip_sketch`).
    pub ip_registers: Vec<(u8, u8)>,
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
    /// Requests from one of a report's most frequent client addresses.
    ClientIp(&'a str),
}

const UPSTREAM_PREFIX: &str = "up/";
const LATENCY_PREFIX: &str = "ms/";
const ROUTE_PREFIX: &str = "route/";
const EVENTS_DROPPED: &str = "ev/dropped";
const CLIENT_IP_PREFIX: &str = "ip/";

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
            StoredCode::ClientIp(ip) => format!("{CLIENT_IP_PREFIX}{ip}"),
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
        if let Some(ip) = code.strip_prefix(CLIENT_IP_PREFIX) {
            return Some(StoredCode::ClientIp(ip));
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
        reporter: None,
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
    let ip_registers = report
        .ip_sketch
        .iter()
        .filter(|(_, value)| (1..=64).contains(*value))
        .map(|(register, value)| (*register, *value))
        .collect();
    Ok(HourlyUsage {
        key_id: report.key_id,
        hour_start: hour.timestamp(),
        counts,
        events,
        ip_registers,
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
    for (ip, value) in report.top_ips.iter().take(MAX_TOP_IPS) {
        if let Ok(ip) = ip.parse::<std::net::IpAddr>() {
            let ip = keygate_contract::fields::canonical_ip(ip).to_string();
            push(StoredCode::ClientIp(&ip), *value);
        }
    }
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Reports counted (for keys that exist and are not deleted).
    pub accepted: u32,
    /// Reports dropped because their key is unknown or deleted.
    pub unknown_keys: u32,
    /// The batch id was seen before: nothing was counted now, the numbers are the first time's.
    pub duplicate: bool,
    /// Reports not counted because they claim more than any proxy could have allowed
    /// (`domain::plausibility`); the rest of the batch is counted. Not remembered: a duplicate
    /// lists none.
    pub refused: Vec<RefusedEntry>,
    /// Its reporter (a proxy identity) was revoked before it was counted: nothing of it was.
    pub reporter_revoked: bool,
}

#[cfg(test)]
mod tests;
