//! Headroom (`GET /v1/keys/{id}/limits`): per limit in force, what is used now and when room
//! comes back. The rate windows are read from the fleet counts (sliding windows of buckets, as
//! the proxies count them); the daily and monthly quotas from the counted usage (UTC day and
//! month, reset at their end).

use crate::domain::plans::Quotas;
use crate::domain::quota::{self, QuotaUsage};
use chrono::{DateTime, Utc};
use keygate_contract::fleet::WINDOWS;
use keygate_contract::snapshot::Limits;
use serde::{Deserialize, Serialize};

/// What each fleet window spans, in the order of `keygate_contract::fleet` windows.
pub const WINDOW_MS: [u64; WINDOWS] = [60_000, 3_600_000, 86_400_000];
pub const WINDOW_NAMES: [&str; WINDOWS] = ["per_minute", "per_hour", "per_day"];

/// One bucket of a key's fleet counts: window index, bucket width, bucket number, the fleet's
/// count in it.
pub type FleetBucket = (usize, u64, u64, u64);

/// A window's use: the count over its buckets still inside the window at `now_ms`, and when
/// the oldest of them leaves it (Unix ms; `None` when nothing is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowUse {
    pub used: u64,
    pub frees_at_ms: Option<u64>,
}

/// Each window's use at `now_ms` from `buckets`. Buckets of another width (proxies rolling out
/// new window settings count apart) are summed per width and the largest sum taken.
pub fn window_use(buckets: &[FleetBucket], now_ms: u64) -> [WindowUse; WINDOWS] {
    let mut uses = [WindowUse::default(); WINDOWS];
    for (window, slot) in uses.iter_mut().enumerate() {
        let mut widths: Vec<u64> = buckets
            .iter()
            .filter(|(w, ..)| *w == window)
            .map(|(_, width, ..)| *width)
            .filter(|width| *width > 0)
            .collect();
        widths.sort_unstable();
        widths.dedup();
        for width in widths {
            let start = now_ms.saturating_sub(WINDOW_MS[window]);
            let inside: Vec<(u64, u64)> = buckets
                .iter()
                .filter(|(w, bucket_ms, ..)| *w == window && *bucket_ms == width)
                .map(|&(_, _, bucket, count)| (bucket, count))
                .filter(|&(bucket, _)| {
                    let end = bucket.saturating_add(1).saturating_mul(width);
                    end > start && bucket.saturating_mul(width) <= now_ms
                })
                .collect();
            let used = inside.iter().map(|(_, count)| *count).sum::<u64>();
            if used > slot.used {
                let oldest = inside.iter().filter(|(_, c)| *c > 0).map(|(b, _)| *b).min();
                *slot = WindowUse {
                    used,
                    frees_at_ms: oldest.map(|bucket| {
                        bucket
                            .saturating_add(1)
                            .saturating_mul(width)
                            .saturating_add(WINDOW_MS[window])
                    }),
                };
            }
        }
    }
    uses
}

/// One limit in force and what is used of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitUse {
    /// `per_minute`, `per_hour`, `per_day` (rate windows, sliding), `quota_day`, `quota_month`
    /// (UTC calendar periods).
    pub name: String,
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    /// When the period resets (quotas) or the oldest counted request leaves the window (rate
    /// windows; null when nothing is counted).
    pub resets_at: Option<String>,
    /// Where `used` comes from: `fleet` (the fleet's rate-limit counts) or `usage` (counted
    /// usage reports).
    pub source: String,
}

impl LimitUse {
    pub fn new(
        name: &str,
        limit: u64,
        used: u64,
        resets_at: Option<DateTime<Utc>>,
        source: &str,
    ) -> Self {
        LimitUse {
            name: name.to_string(),
            limit,
            used,
            remaining: limit.saturating_sub(used),
            resets_at: resets_at.map(crate::domain::clock::format),
            source: source.to_string(),
        }
    }
}

/// Every limit of a key in force, with what is used: the rate windows from the fleet's
/// `windows` use, the quotas from `quota_use` (reset at the next UTC midnight and month).
pub fn limits_in_force(
    limits: &Limits,
    quotas: Quotas,
    quota_use: QuotaUsage,
    windows: [WindowUse; WINDOWS],
    now: DateTime<Utc>,
) -> Vec<LimitUse> {
    let rate = [limits.per_minute, limits.per_hour, limits.per_day];
    let mut found = Vec::new();
    for (window, limit) in rate.iter().enumerate() {
        if let Some(limit) = limit {
            let frees_at = windows[window]
                .frees_at_ms
                .and_then(|ms| DateTime::from_timestamp_millis(i64::try_from(ms).ok()?));
            found.push(LimitUse::new(
                WINDOW_NAMES[window],
                *limit,
                windows[window].used,
                frees_at,
                "fleet",
            ));
        }
    }
    if let Some(limit) = quotas.per_day {
        found.push(LimitUse::new(
            "quota_day",
            limit,
            quota_use.today,
            Some(quota::next_day_start(now)),
            "usage",
        ));
    }
    if let Some(limit) = quotas.per_month {
        found.push(LimitUse::new(
            "quota_month",
            limit,
            quota_use.this_month,
            Some(quota::next_month_start(now)),
            "usage",
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_sums_its_buckets_still_inside() {
        let now = 10 * 60_000 + 30_000; // 10.5 minutes
        let buckets = [
            (0, 2_000, (now - 70_000) / 2_000, 50), // left the minute
            (0, 2_000, (now - 50_000) / 2_000, 3),
            (0, 2_000, now / 2_000, 4),
            (1, 120_000, now / 120_000, 7),
            (0, 5_000, now / 5_000, 2), // another width: the larger sum wins
        ];
        let uses = window_use(&buckets, now);
        assert_eq!(uses[0].used, 7);
        let oldest = (now - 50_000) / 2_000;
        assert_eq!(uses[0].frees_at_ms, Some((oldest + 1) * 2_000 + 60_000));
        assert_eq!(uses[1].used, 7);
        assert_eq!(uses[2], WindowUse::default());
    }

    #[test]
    fn every_limit_in_force_is_listed_with_its_reset() {
        let now = crate::domain::clock::parse("2026-11-23T21:15:00Z").unwrap();
        let limits = Limits {
            per_minute: Some(60),
            per_day: Some(1_000),
            ..Limits::default()
        };
        let quotas = Quotas {
            per_day: Some(1_000),
            per_month: None,
        };
        let windows = [
            WindowUse {
                used: 12,
                frees_at_ms: Some(now.timestamp_millis() as u64 + 30_000),
            },
            WindowUse::default(),
            WindowUse::default(),
        ];
        let uses = limits_in_force(
            &limits,
            quotas,
            QuotaUsage {
                today: 230,
                this_month: 900,
            },
            windows,
            now,
        );
        let names: Vec<&str> = uses.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["per_minute", "per_day", "quota_day"]);
        assert_eq!((uses[0].used, uses[0].remaining), (12, 48));
        assert_eq!(uses[0].resets_at.as_deref(), Some("2026-11-23T21:15:30Z"));
        assert_eq!(uses[1].resets_at, None, "nothing counted: nothing to free");
        assert_eq!((uses[2].used, uses[2].source.as_str()), (230, "usage"));
        assert_eq!(uses[2].resets_at.as_deref(), Some("2026-11-24T00:00:00Z"));
    }

    #[test]
    fn remaining_never_goes_below_zero() {
        let over = LimitUse::new("per_minute", 10, 12, None, "fleet");
        assert_eq!(over.remaining, 0);
    }
}
