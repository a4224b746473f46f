//! RFC 3339 instants as stored and served: UTC, with `Z`.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

/// Now, to the whole second, so generated timestamps read cleanly.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
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
}
