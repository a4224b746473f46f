//! RFC 3339 instants as stored and served: UTC, with `Z`.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

/// Now, to the whole second, so generated timestamps read cleanly.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// Now in Unix milliseconds, unrounded: the fleet counts' buckets are finer than a second.
pub fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

pub fn format(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses any RFC 3339 instant (any offset) into UTC.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|instant| instant.with_timezone(&Utc))
}

/// When a rotated credential (a key or a token) stops working: `grace_seconds` after `now`, or
/// its own expiry if that comes sooner.
pub fn end_of_grace(
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    grace_seconds: u64,
) -> DateTime<Utc> {
    let grace_end = i64::try_from(grace_seconds)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .and_then(|grace| now.checked_add_signed(grace))
        .unwrap_or(now);
    match expires_at {
        Some(expiry) if expiry < grace_end => expiry,
        _ => grace_end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_offsets_to_utc_z() {
        let instant = parse("2030-01-01T02:00:00+02:00").unwrap();
        assert_eq!(format(instant), "2030-01-01T00:00:00Z");
        assert_eq!(
            format(parse("2030-01-01T00:00:00.5Z").unwrap()),
            "2030-01-01T00:00:00.500Z"
        );
        assert!(parse("2030-01-01").is_none());
        assert!(parse("tomorrow").is_none());
    }

    #[test]
    fn grace_ends_at_the_earlier_of_the_grace_and_the_expiry() {
        let at = |text| parse(text).unwrap();
        let now = at("2030-01-01T00:00:00Z");
        assert_eq!(end_of_grace(None, now, 60), at("2030-01-01T00:01:00Z"));
        let soon = at("2030-01-01T00:00:30Z");
        assert_eq!(end_of_grace(Some(soon), now, 60), soon);
        assert_eq!(
            end_of_grace(Some(at("2031-01-01T00:00:00Z")), now, 60),
            at("2030-01-01T00:01:00Z")
        );
        assert_eq!(end_of_grace(None, now, 0), now);
        assert_eq!(end_of_grace(None, now, u64::MAX), now);
    }
}
