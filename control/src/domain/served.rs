//! A key as proxies see it: the snapshot record the control service serves, and the check, with
//! the filter's own validation, that the filter will take it.

use crate::domain::clock;
use crate::domain::keys::StoredKey;
use crate::domain::plans::effective_limits;
use crate::domain::quota::mark_in_force;
use chrono::{DateTime, Utc};
use keygate_contract::compact;
use keygate_contract::key_hash::parse_hex_digest;
use keygate_contract::snapshot::KeyRecord;
use keygate_contract::FieldError;

/// A key as proxies see it in the snapshot at `now`; a quota mark that has passed is null.
pub fn key_record(key: StoredKey, now: DateTime<Utc>) -> KeyRecord {
    KeyRecord {
        quota_exceeded_until: mark_in_force(key.quota_exceeded_until, now).map(clock::format),
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
        expires_at: key.expires_at.map(clock::format),
        active: key.active,
        plan: key.plan.as_str().to_string(),
    }
}

/// A key as proxies see it at `now`, as a framed record of the compact encoding. A key that
/// cannot be encoded (the admin API validates every key it stores, so only a row written some
/// other way) goes out as a record the filter quarantines by id and hash, as it would the same
/// key in JSON: it is denied and never left at an older version. `None` for a key whose hash
/// is not a hash: no proxy can ever look it up, so it is left out (and logged).
pub fn compact_record(key: StoredKey, now: DateTime<Utc>) -> Option<Vec<u8>> {
    let record = key_record(key, now);
    let error = match compact::encode_record(&record) {
        Ok(framed) => return Some(framed),
        Err(error) => error,
    };
    eprintln!(
        "keygate-control: key {} cannot be encoded for the snapshot ({error})",
        record.id
    );
    let hash = parse_hex_digest(&record.hash)?;
    Some(compact::encode_unreadable(&hash, &record.id))
}

/// Checks the key as the snapshot will serve it with the filter's own record validation
/// (`keygate_contract::record`), so a key the admin API stores is never one the filter refuses.
/// Field names are the admin API's (`name`, `allowed_ips[1]`).
pub fn filter_accepts(key: &StoredKey, now: DateTime<Utc>) -> Result<(), FieldError> {
    keygate_contract::record::validate_record(&key_record(key.clone(), now), 0).map(|_| ())
}
