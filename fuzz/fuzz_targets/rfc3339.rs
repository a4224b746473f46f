//! `timefmt::parse_rfc3339` and `usage::format_hour`.
//!
//! Invariants: parsing never panics; for an instant it accepts, the start of its UTC hour
//! formatted by `format_hour` parses back to the same hour start (for years `format_hour` can
//! write as four digits); a `Z` instant and the same instant written with an offset agree.
#![no_main]

use keygate_contract::timefmt::parse_rfc3339;
use keygate::sync::tally::format_hour;
use libfuzzer_sys::fuzz_target;

/// 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z.
const YEAR_0: i64 = -62_167_219_200;
const YEAR_10000: i64 = 253_402_300_800;

fn check_hour(hour_start: i64) {
    let text = format_hour(hour_start);
    assert_eq!(parse_rfc3339(&text), Some(hour_start), "{hour_start} -> {text:?}");
}

fuzz_target!(|data: &[u8]| {
    if data.len() >= 8 {
        let raw = i64::from_le_bytes(data[..8].try_into().unwrap());
        let span = YEAR_10000 - YEAR_0;
        let at = YEAR_0 + raw.rem_euclid(span);
        check_hour(at - at.rem_euclid(3600));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(at) = parse_rfc3339(text) else {
        return;
    };
    let hour_start = at - at.rem_euclid(3600);
    if (YEAR_0..YEAR_10000).contains(&hour_start) {
        check_hour(hour_start);
    }
    // The same civil time in UTC, minus the offset it was written with, is the same instant.
    if text.len() >= 25 {
        let (civil, offset) = text.split_at(text.len() - 6);
        if let (Some(sign @ ('+' | '-')), Some(utc)) =
            (offset.chars().next(), parse_rfc3339(&format!("{civil}Z")))
        {
            let hours: i64 = offset[1..3].parse().unwrap();
            let minutes: i64 = offset[4..6].parse().unwrap();
            let delta = hours * 3600 + minutes * 60;
            let expected = if sign == '+' { utc - delta } else { utc + delta };
            assert_eq!(at, expected, "{text:?}");
        }
    }
});
