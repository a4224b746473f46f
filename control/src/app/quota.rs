//! Quota marks on key rows: recomputed from the usage rows whenever usage arrives or a key's
//! limits change, and versioned like any other key change so proxies get them in deltas.

use crate::domain::keys::StoredKey;
use crate::domain::plans::effective_quotas;
use crate::domain::quota::{self, QuotaUsage};
use crate::store::db::bump_version;
use crate::store::keys;
use crate::store::sql::{Result, Tx};
use crate::store::usage::allowed_between;
use chrono::{DateTime, Utc};

/// Until when `key` is over its quotas given the usage stored so far.
pub fn current_mark(tx: &Tx, key: &StoredKey, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let quotas = effective_quotas(&key.plan_limits, &key.limits);
    // Skip the sums a key without that quota does not need (enterprise keys need none).
    let usage = QuotaUsage {
        today: match quotas.per_day {
            Some(_) => allowed_between(
                tx,
                &key.id,
                quota::day_start(now),
                quota::next_day_start(now),
            )?,
            None => 0,
        },
        this_month: match quotas.per_month {
            Some(_) => allowed_between(
                tx,
                &key.id,
                quota::month_start(now),
                quota::next_month_start(now),
            )?,
            None => 0,
        },
    };
    Ok(quota::exceeded_until(now, quotas, usage))
}

/// Recomputes the marks of `touched`; the keys whose mark is set, moved or cleared get one new
/// version between them (as any key change does). Returns how many changed.
pub fn refresh_marks(tx: &Tx, touched: &[StoredKey], now: DateTime<Utc>) -> Result<usize> {
    let mut version = None;
    let mut changed = 0;
    for key in touched {
        let mark = current_mark(tx, key, now)?;
        // A lapsed mark is as good as none: the filter already ignores it, so no new version.
        if mark == quota::mark_in_force(key.quota_exceeded_until, now) {
            continue;
        }
        let version = match version {
            Some(version) => version,
            None => *version.insert(bump_version(tx)?),
        };
        keys::set_quota_mark(tx, key.seq, mark, version)?;
        changed += 1;
    }
    Ok(changed)
}
