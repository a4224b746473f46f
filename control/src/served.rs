//! A key as proxies see it: the snapshot record the control service serves, and the check, with
//! the filter's own validation, that the filter will take it.

use crate::plans::effective_limits;
use crate::quota::mark_in_force;
use crate::store::keys::StoredKey;
use crate::validate::FieldError;
use chrono::{DateTime, Utc};
use keygate::contract::snapshot::KeyRecord;

/// A key as proxies see it in the snapshot at `now`; a quota mark that has passed is null.
pub fn key_record(key: StoredKey, now: DateTime<Utc>) -> KeyRecord {
    KeyRecord {
        quota_exceeded_until: mark_in_force(key.quota_exceeded_until.as_deref(), now),
        limits: effective_limits(&key.plan_limits, &key.limits),
        id: key.id,
        hash: key.hash,
        prefix: key.prefix,
        last4: key.last4,
        name: key.name,
        team: key.team,
        environment: key.environment.as_str().to_string(),
        scopes: key.scopes,
        allowed_ips: key.allowed_ips,
        expires_at: key.expires_at,
        active: key.active,
        plan: key.plan.as_str().to_string(),
    }
}

/// Checks the key as the snapshot will serve it with the filter's own record validation
/// (`keygate::contract::record`), so a key the admin API stores is never one the filter refuses.
/// Field names are the admin API's (`name`, `allowed_ips[1]`).
pub fn filter_accepts(key: &StoredKey, now: DateTime<Utc>) -> Result<(), FieldError> {
    keygate::contract::record::validate_record(&key_record(key.clone(), now), 0).map(|_| ())
}
