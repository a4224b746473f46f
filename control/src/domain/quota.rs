//! Fleet-wide quotas as pure functions: the UTC periods they count over, and until when a key
//! that used up its quota stays marked as over it.

use crate::domain::plans::Quotas;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

/// Allowed requests a key has made in the current UTC day and month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaUsage {
    pub today: u64,
    pub this_month: u64,
}

/// Midnight (UTC) starting the day `now` falls in.
pub fn day_start(now: DateTime<Utc>) -> DateTime<Utc> {
    midnight(now.date_naive())
}

/// The next UTC midnight after `now` (the start of tomorrow).
pub fn next_day_start(now: DateTime<Utc>) -> DateTime<Utc> {
    day_start(now) + Duration::days(1)
}

/// The first instant of the UTC month `now` falls in.
pub fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(now.year(), now.month(), 1).map_or(now, midnight)
}

/// The first instant of the UTC month after the one `now` falls in (December → January).
pub fn next_month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = match now.month() {
        12 => (now.year() + 1, 1),
        month => (now.year(), month + 1),
    };
    // Only fails past chrono's year 262143; a month from `now` is then the best we can say.
    NaiveDate::from_ymd_opt(year, month, 1).map_or(now + Duration::days(31), midnight)
}

/// The UTC day and the UTC month `now` falls in, each `[start, end)`: what the daily and the
/// monthly quota count over.
pub fn periods(now: DateTime<Utc>) -> [(DateTime<Utc>, DateTime<Utc>); 2] {
    [
        (day_start(now), next_day_start(now)),
        (month_start(now), next_month_start(now)),
    ]
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
}

/// Until when the key is over quota: the next midnight if today's usage reached the daily
/// quota, the next month if this month's reached the monthly one, the later of the two if
/// both; `None` if neither.
pub fn exceeded_until(
    now: DateTime<Utc>,
    quotas: Quotas,
    usage: QuotaUsage,
) -> Option<DateTime<Utc>> {
    let day = quotas
        .per_day
        .filter(|&quota| usage.today >= quota)
        .map(|_| next_day_start(now));
    let month = quotas
        .per_month
        .filter(|&quota| usage.this_month >= quota)
        .map(|_| next_month_start(now));
    day.max(month)
}

/// A stored mark as it should be served: in force, or `None` once its instant has passed (the
/// period rolled over; nothing is written for that).
pub fn mark_in_force(stored: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    stored.filter(|until| *until > now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock;

    fn at(text: &str) -> DateTime<Utc> {
        clock::parse(text).unwrap()
    }

    #[test]
    fn period_boundaries() {
        let cases = [
            // now, next midnight, month start, next month start
            (
                "2026-11-23T21:15:00Z",
                "2026-11-24T00:00:00Z",
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
            (
                "2026-11-30T23:59:59Z",
                "2026-12-01T00:00:00Z",
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
            (
                "2026-12-31T23:59:59.999Z",
                "2027-01-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            (
                "2027-01-01T00:00:00Z",
                "2027-01-02T00:00:00Z",
                "2027-01-01T00:00:00Z",
                "2027-02-01T00:00:00Z",
            ),
            (
                "2028-02-28T12:00:00Z",
                "2028-02-29T00:00:00Z",
                "2028-02-01T00:00:00Z",
                "2028-03-01T00:00:00Z",
            ),
            (
                "2028-02-29T12:00:00Z",
                "2028-03-01T00:00:00Z",
                "2028-02-01T00:00:00Z",
                "2028-03-01T00:00:00Z",
            ),
            (
                "2027-02-28T12:00:00Z",
                "2027-03-01T00:00:00Z",
                "2027-02-01T00:00:00Z",
                "2027-03-01T00:00:00Z",
            ),
            (
                "2026-11-24T01:30:00+05:00",
                "2026-11-24T00:00:00Z",
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
        ];
        for (now, next_day, month, next_month) in cases {
            let now = at(now);
            assert_eq!(clock::format(next_day_start(now)), next_day, "{now}");
            assert_eq!(clock::format(month_start(now)), month, "{now}");
            assert_eq!(clock::format(next_month_start(now)), next_month, "{now}");
            assert!(day_start(now) <= now && now < next_day_start(now));
        }
    }

    #[test]
    fn exceeded_until_table() {
        let now = at("2026-11-23T21:15:00Z");
        let tomorrow = Some(at("2026-11-24T00:00:00Z"));
        let next_month = Some(at("2026-12-01T00:00:00Z"));
        let quotas = |per_day, per_month| Quotas { per_day, per_month };
        let usage = |today, this_month| QuotaUsage { today, this_month };
        let cases = [
            (quotas(None, None), usage(1_000_000, 1_000_000), None),
            (quotas(Some(5), None), usage(4, 100), None),
            (quotas(Some(5), None), usage(5, 5), tomorrow),
            (quotas(Some(5), None), usage(6, 6), tomorrow),
            (quotas(None, Some(10)), usage(9, 9), None),
            (quotas(None, Some(10)), usage(3, 10), next_month),
            (quotas(Some(5), Some(10)), usage(5, 7), tomorrow),
            (quotas(Some(5), Some(10)), usage(5, 10), next_month),
            (quotas(Some(5), Some(10)), usage(2, 12), next_month),
        ];
        for (quotas, usage, expected) in cases {
            assert_eq!(
                exceeded_until(now, quotas, usage),
                expected,
                "{quotas:?} {usage:?}"
            );
        }
    }

    #[test]
    fn a_month_quota_on_the_last_day_ends_with_the_day_quota() {
        let now = at("2026-12-31T10:00:00Z");
        let both = Quotas {
            per_day: Some(1),
            per_month: Some(1),
        };
        let usage = QuotaUsage {
            today: 1,
            this_month: 1,
        };
        assert_eq!(
            exceeded_until(now, both, usage),
            Some(at("2027-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn marks_lapse_when_their_instant_passes() {
        let now = at("2026-11-23T21:15:00Z");
        let midnight = at("2026-11-24T00:00:00Z");
        assert_eq!(mark_in_force(Some(midnight), now), Some(midnight));
        assert_eq!(mark_in_force(Some(now), now), None);
        assert_eq!(mark_in_force(None, now), None);
    }
}
