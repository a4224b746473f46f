//! Usage report bodies as proxies send them (`POST /v1/usage`), and their validation into a
//! batch the store can count. Every error names the field, e.g. `reports[3].hour: …`.

use crate::domain::clock;
use chrono::{DateTime, Duration, Timelike, Utc};
use keygate_contract::FieldError;

/// Reports one body may carry.
pub const MAX_REPORTS: usize = 10_000;
const MAX_CODE_CHARS: usize = 64;
/// Per count in one report: far above what a proxy admits in one interval, and low enough that
/// no number of batches a fleet can send overflows SQLite's 64-bit sums.
pub const MAX_COUNT: u64 = 1_000_000_000_000;
/// How `allowed` is stored beside the denial codes; reserved, so not a denial code.
pub const ALLOWED_CODE: &str = "ALLOWED";

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

/// One key's non-zero counts for one hour, by code (`ALLOWED` or a denial code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyUsage {
    pub key_id: String,
    /// Unix seconds of the UTC hour start.
    pub hour_start: i64,
    pub counts: Vec<(String, u64)>,
}

/// Checks a body against the contract; `now` bounds how far ahead an hour may be.
pub fn validate(request: UsageRequest, now: DateTime<Utc>) -> Result<UsageBatch, FieldError> {
    let proxy_id = identifier("proxy_id", request.proxy_id)?;
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
        .map(|(index, report)| hourly_usage(&format!("reports[{index}]"), report, now))
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
    report: RawReport,
    now: DateTime<Utc>,
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
    for (code, value) in report.denied {
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
    counts.retain(|(_, value)| *value > 0);
    Ok(HourlyUsage {
        key_id: report.key_id,
        hour_start: hour.timestamp(),
        counts,
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
            }]
        );
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
