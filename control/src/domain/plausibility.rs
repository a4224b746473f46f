//! Damage bounds on what proxies report (docs/security.md, "Implausible reports"): one report
//! entry is one proxy's count of one key in one hour, and no proxy can let through more than
//! the key's limits admit in an hour. The filter's windows are sliding and exact per proxy (any
//! minute admits at most the per-minute limit), so an hour admits at most 60 × per-minute or the
//! per-hour limit, whichever is less. (The per-day limit is also the fleet's daily quota, which
//! reports exist to count: it is left out of the bound.) A key without limits, or whose limits
//! (or plan) changed since the hour began, is bounded by `--max-proxy-rate` instead: the limits
//! of the hour are not known, and a lowered limit must not refuse what the higher one allowed.

use crate::domain::alerts::KeyRef;
use crate::domain::keys::StoredKey;
use chrono::{DateTime, Utc};
use keygate_contract::fleet::RefusedCount;
use keygate_contract::snapshot::Limits;
use serde::Serialize;
use std::collections::HashMap;

/// `--max-proxy-rate`'s default: requests per second one proxy may report for one key, far
/// above what one Envoy serves (about 50,000 a second on this project's 2-core benchmark).
pub const DEFAULT_MAX_PROXY_RATE: u64 = 200_000;

/// An entry refused as implausible, as the usage answer names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedEntry {
    pub key_id: String,
    /// Unix seconds of the hour's start.
    pub hour_start: i64,
    /// Allowed requests the entry claimed.
    pub claimed: u64,
    /// The most one proxy can have allowed for the key in that hour.
    pub bound: u64,
    pub reason: String,
    /// The key's name and team, for the alert (not in the answer).
    #[serde(skip)]
    pub key_name: String,
    #[serde(skip)]
    pub team: String,
}

/// A fleet sync's counts of one key and window that were not counted: one Envoy cannot have
/// admitted that many (`keygate_contract::fleet::own_count_bound`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRefusal {
    /// The posting proxy's instance as counted (`{identity}/{instance}` with a credential).
    pub proxy_id: String,
    pub refused: RefusedCount,
}

/// When `key`'s limits last changed, for both damage bounds: a key's limits hold from its
/// creation, so only a later edit of the key, or of its plan (`plans_changed`, by plan name,
/// `store::plans::changed_at`), is a change; `None` when neither was edited.
pub fn limits_changed_at(
    key: &StoredKey,
    plans_changed: &HashMap<String, DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    (key.updated_at > key.created_at)
        .then_some(key.updated_at)
        .into_iter()
        .chain(plans_changed.get(key.plan.as_str()).copied())
        .max()
}

/// The most allowed requests one proxy can report for a key in one hour.
pub fn hourly_bound(limits: &Limits, limits_changed_in_hour: bool, max_proxy_rate: u64) -> u64 {
    let by_rate = max_proxy_rate.saturating_mul(3600);
    if limits_changed_in_hour {
        return by_rate;
    }
    [
        limits.per_minute.map(|minute| minute.saturating_mul(60)),
        limits.per_hour,
    ]
    .into_iter()
    .flatten()
    .min()
    .map_or(by_rate, |bound| bound.min(by_rate))
}

/// The refusal of an entry claiming `claimed` allowed requests of `key` in the hour starting
/// `hour_start`, if that is more than the key's bound; `changed_at` is when the key's limits or
/// its plan last changed.
pub fn check(
    key: KeyRef<'_>,
    hour_start: i64,
    claimed: u64,
    limits: &Limits,
    changed_at: DateTime<Utc>,
    max_proxy_rate: u64,
) -> Option<RefusedEntry> {
    let changed_in_hour = changed_at.timestamp() >= hour_start;
    let bound = hourly_bound(limits, changed_in_hour, max_proxy_rate);
    (claimed > bound).then(|| RefusedEntry {
        key_id: key.id.to_string(),
        key_name: key.name.to_string(),
        team: key.team.to_string(),
        hour_start,
        claimed,
        bound,
        reason: if changed_in_hour || bound == max_proxy_rate.saturating_mul(3600) {
            format!("more than --max-proxy-rate ({max_proxy_rate}/s) for an hour")
        } else {
            "more than the key's rate limits admit in an hour".to_string()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn limits(minute: Option<u64>, hour: Option<u64>, day: Option<u64>) -> Limits {
        Limits {
            per_minute: minute,
            per_hour: hour,
            per_day: day,
            concurrent: None,
        }
    }

    #[test]
    fn the_least_of_the_limits_bounds_an_hour() {
        let free = limits(Some(60), None, Some(1000));
        assert_eq!(
            hourly_bound(&free, false, 200_000),
            3600,
            "the day limit is a quota"
        );
        assert_eq!(
            hourly_bound(&limits(Some(60), None, None), false, 200_000),
            3600
        );
        assert_eq!(
            hourly_bound(&limits(None, Some(500), None), false, 200_000),
            500
        );
        assert_eq!(hourly_bound(&Limits::default(), false, 10), 36_000);
        assert_eq!(
            hourly_bound(&free, true, 10),
            36_000,
            "changed limits: the rate bound"
        );
        assert_eq!(
            hourly_bound(&limits(Some(u64::MAX), None, None), false, u64::MAX),
            u64::MAX
        );
    }

    #[test]
    fn the_forged_report_of_the_issue_is_refused_and_honest_ones_are_not() {
        let hour = 1_800_000_000 / 3600 * 3600;
        let earlier = Utc.timestamp_opt(hour - 86_400, 0).unwrap();
        let per_minute = limits(Some(60), None, None);
        let key = KeyRef {
            id: "key_1",
            name: "n",
            team: "",
        };
        let refused = check(key, hour, 5000, &per_minute, earlier, 200_000).unwrap();
        assert_eq!((refused.claimed, refused.bound), (5000, 3600));
        assert!(refused.reason.contains("rate limits"));
        assert_eq!(check(key, hour, 3600, &per_minute, earlier, 200_000), None);
        // Limits changed during the hour: what the old ones admitted is not refused.
        let during = Utc.timestamp_opt(hour + 600, 0).unwrap();
        assert_eq!(check(key, hour, 5000, &per_minute, during, 200_000), None);
        let unlimited = check(
            key,
            hour,
            8_000_000_000,
            &Limits::default(),
            earlier,
            200_000,
        );
        assert!(unlimited.unwrap().reason.contains("--max-proxy-rate"));
    }
}
