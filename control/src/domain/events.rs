//! The events read (`GET /v1/keys/{id}/events`): its query validated, and how long events are
//! kept.

use crate::domain::clock;
use crate::domain::usage_report::is_denial_code;
use chrono::{DateTime, Utc};
use keygate_contract::FieldError;
use serde::Deserialize;

/// Events one read returns when `limit` is not given, and at most.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
/// Events kept per key at most (the oldest go first), beside the retention in days.
pub const DEFAULT_MAX_PER_KEY: u32 = 1_000;
pub const DEFAULT_RETENTION_DAYS: u32 = 7;

/// Query of the events read, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct EventQuery {
    pub limit: Option<String>,
    pub outcome: Option<String>,
    pub before: Option<String>,
}

/// Which events a read wants by outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeFilter {
    Any,
    /// Every denial (an error code).
    Denied,
    /// Every failed upstream answer (`5xx` or `none`).
    Failed,
    /// One outcome: an error code, `5xx` or `none`.
    Exactly(String),
}

/// A validated events read: the newest `limit` events before `before_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRange {
    pub limit: u32,
    pub outcome: OutcomeFilter,
    pub before_ms: Option<i64>,
}

pub fn validate(query: &EventQuery) -> Result<EventRange, FieldError> {
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let outcome = match query.outcome.as_deref() {
        None | Some("") => OutcomeFilter::Any,
        Some("denied") => OutcomeFilter::Denied,
        Some("failed") => OutcomeFilter::Failed,
        Some(exact @ ("5xx" | "none")) => OutcomeFilter::Exactly(exact.to_string()),
        Some(code) if is_denial_code(code) => OutcomeFilter::Exactly(code.to_string()),
        Some(other) => {
            return Err(FieldError::new(
                "outcome",
                format!(
                    "{other:?} is not denied, failed, 5xx, none or an error code such as RATE_LIMIT_EXCEEDED"
                ),
            ))
        }
    };
    let before_ms = query
        .before
        .as_deref()
        .map(|text| {
            clock::parse(text)
                .map(|at| at.timestamp_millis())
                .ok_or_else(|| {
                    FieldError::new(
                        "before",
                        format!("{text:?} is not an RFC 3339 instant such as 2026-11-23T21:00:00Z"),
                    )
                })
        })
        .transpose()?;
    Ok(EventRange {
        limit,
        outcome,
        before_ms,
    })
}

/// Events older than this instant are forgotten.
pub fn retention_cutoff_ms(now: DateTime<Utc>, retention_days: u32) -> i64 {
    (now - chrono::Duration::days(i64::from(retention_days))).timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<&str>, outcome: Option<&str>, before: Option<&str>) -> EventQuery {
        EventQuery {
            limit: limit.map(Into::into),
            outcome: outcome.map(Into::into),
            before: before.map(Into::into),
        }
    }

    #[test]
    fn reads_defaults_and_filters() {
        let plain = validate(&EventQuery::default()).unwrap();
        assert_eq!(
            plain,
            EventRange {
                limit: DEFAULT_LIMIT,
                outcome: OutcomeFilter::Any,
                before_ms: None
            }
        );
        let narrow =
            validate(&query(Some("5"), Some("5xx"), Some("2026-11-23T21:00:00Z"))).unwrap();
        assert_eq!(narrow.limit, 5);
        assert_eq!(narrow.outcome, OutcomeFilter::Exactly("5xx".into()));
        assert_eq!(narrow.before_ms, Some(1_795_467_600_000));
        assert_eq!(
            validate(&query(None, Some("denied"), None))
                .unwrap()
                .outcome,
            OutcomeFilter::Denied
        );
        assert_eq!(
            validate(&query(None, Some("QUOTA_EXCEEDED"), None))
                .unwrap()
                .outcome,
            OutcomeFilter::Exactly("QUOTA_EXCEEDED".into())
        );
    }

    #[test]
    fn errors_name_the_field() {
        for (query, field) in [
            (query(Some("0"), None, None), "limit"),
            (query(Some("501"), None, None), "limit"),
            (query(Some("x"), None, None), "limit"),
            (query(None, Some("4xx"), None), "outcome"),
            (query(None, None, Some("yesterday")), "before"),
        ] {
            assert_eq!(validate(&query).unwrap_err().field, field);
        }
    }
}
