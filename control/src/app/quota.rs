//! Quota marks on key rows: recomputed from the usage rows whenever usage arrives or a key's
//! limits change, and versioned like any other key change so proxies get them in deltas.

use crate::domain::keys::StoredKey;
use crate::domain::plans::{effective_quotas, Quotas};
use crate::domain::quota::{self, QuotaUsage};
use crate::store::db::bump_version;
use crate::store::keys;
use crate::store::sql::{Result, Tx};
use crate::store::usage::allowed_sums;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Until when `key` is over its quotas given the usage stored so far.
pub fn current_mark(tx: &Tx, key: &StoredKey, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    Ok(marks(tx, std::slice::from_ref(key), now)?.pop().flatten())
}

/// Recomputes the marks of `touched`; the keys whose mark is set, moved or cleared get one new
/// version between them (as any key change does). Returns how many changed.
pub fn refresh_marks(tx: &Tx, touched: &[StoredKey], now: DateTime<Utc>) -> Result<usize> {
    let mut version = None;
    let mut changed = 0;
    for (key, mark) in touched.iter().zip(marks(tx, touched, now)?) {
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

/// The mark of each of `keys`, in order, from one read of the usage of those with a quota.
fn marks(tx: &Tx, keys: &[StoredKey], now: DateTime<Utc>) -> Result<Vec<Option<DateTime<Utc>>>> {
    let quotas: Vec<Quotas> = keys
        .iter()
        .map(|key| effective_quotas(&key.plan_limits, &key.limits))
        .collect();
    // Enterprise keys and others without a quota need no sums.
    let with_quota: Vec<&str> = keys
        .iter()
        .zip(&quotas)
        .filter(|(_, quotas)| quotas.per_day.is_some() || quotas.per_month.is_some())
        .map(|(key, _)| key.id.as_str())
        .collect();
    let sums: HashMap<String, [u64; 2]> = if with_quota.is_empty() {
        HashMap::new()
    } else {
        allowed_sums(tx, &with_quota, quota::periods(now))?
    };
    Ok(keys
        .iter()
        .zip(quotas)
        .map(|(key, quotas)| {
            // `exceeded_until` reads only the sums of the quotas the key has.
            let [today, this_month] = sums.get(&key.id).copied().unwrap_or_default();
            quota::exceeded_until(now, quotas, QuotaUsage { today, this_month })
        })
        .collect())
}
