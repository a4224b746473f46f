//! A snapshot record checked into the `StoredKey` the filter keeps, and a snapshot page checked
//! record by record, in either encoding (JSON or compact binary, `contract::page`) with the
//! same rules. The control service runs `validate_record` on every record before it
//! stores a key, so whatever its admin API accepts, the filter accepts.
//!
//! A page with structural damage (not a page at all, a bad epoch, a full snapshot with
//! deletions, a hash listed twice) is rejected whole. A record that fails its own checks, or
//! does not even parse as a record, is quarantined: it is not stored, its hash (when readable)
//! is treated as deleted so no older version of the key keeps working, and every other record
//! applies.

use std::collections::HashSet;

use crate::compact;
use crate::fields::{self, Duplicates, FieldError};
use crate::key_hash::{parse_hex_digest, Digest};
use crate::page::{Body, SnapshotPage};
use crate::snapshot::{KeyRecord, Limits};
use crate::stored_key::StoredKey;

/// Whether `text` is a key hash as snapshots carry it: 64 lowercase hex digits.
pub fn is_hash(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A record's fields with its hash and instants already parsed: where the JSON record (text
/// instants, hex hash) and the compact record (Unix seconds, raw hash) meet, so the field
/// checks below exist once for both encodings.
#[derive(Debug, Clone, Copy)]
pub struct RecordFields<'r> {
    pub id: &'r str,
    pub name: &'r str,
    pub team: &'r str,
    pub environment: &'r str,
    pub prefix: &'r str,
    pub last4: &'r str,
    pub scopes: &'r [String],
    pub allowed_ips: &'r [String],
    pub active: bool,
    pub limits: &'r Limits,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// Unix seconds.
    pub quota_exceeded_until: Option<i64>,
}

/// Checks a record's fields and converts them into what the filter stores, stamped with
/// `generation`. Errors name the field (`name`, `allowed_ips[2]`, `limits.per_minute`, …).
pub fn check_fields(record: &RecordFields<'_>, generation: u64) -> Result<StoredKey, FieldError> {
    fields::identifier("id", record.id)?;
    fields::label("name", record.name)?;
    fields::label("team", record.team)?;
    fields::label("environment", record.environment)?;
    fields::label("prefix", record.prefix)?;
    fields::label("last4", record.last4)?;
    fields::scopes("scopes", record.scopes)?;
    let allowed_ips = fields::allowlist("allowed_ips", record.allowed_ips, Duplicates::Merge)?;
    for (field, value) in [
        ("limits.per_minute", record.limits.per_minute),
        ("limits.per_hour", record.limits.per_hour),
        ("limits.per_day", record.limits.per_day),
        ("limits.concurrent", record.limits.concurrent),
    ] {
        fields::limit(field, value)?;
    }
    for (field, at) in [
        ("expires_at", record.expires_at),
        ("quota_exceeded_until", record.quota_exceeded_until),
    ] {
        // The instants RFC 3339 can write (years 0000 to 9999), so a compact record accepts
        // exactly what a JSON one can carry.
        if at.is_some_and(|at| !(MIN_INSTANT..=MAX_INSTANT).contains(&at)) {
            return Err(FieldError::new(field, "outside the years 0000 to 9999"));
        }
    }
    Ok(StoredKey {
        generation,
        id: record.id.to_string(),
        name: record.name.to_string(),
        team: record.team.to_string(),
        environment: record.environment.to_string(),
        prefix: record.prefix.to_string(),
        scopes: record.scopes.to_vec(),
        allowed_ips,
        expires_at: record.expires_at,
        active: record.active,
        limits: record.limits.clone(),
        quota_exceeded_until: record.quota_exceeded_until,
    })
}

/// `0000-01-01T00:00:00Z` and `9999-12-31T23:59:59Z` in Unix seconds.
const MIN_INSTANT: i64 = -62_167_219_200;
const MAX_INSTANT: i64 = 253_402_300_799;

/// Checks one JSON record and converts it into what the filter stores, stamped with
/// `generation`: its hash and instants parsed, then `check_fields`.
pub fn validate_record(record: &KeyRecord, generation: u64) -> Result<StoredKey, FieldError> {
    if !is_hash(&record.hash) {
        return Err(FieldError::new(
            "hash",
            "must be 64 lowercase hex characters",
        ));
    }
    let expires_at = fields::instant("expires_at", record.expires_at.as_deref())?;
    let quota_exceeded_until = fields::instant(
        "quota_exceeded_until",
        record.quota_exceeded_until.as_deref(),
    )?;
    check_fields(
        &RecordFields {
            id: &record.id,
            name: &record.name,
            team: &record.team,
            environment: &record.environment,
            prefix: &record.prefix,
            last4: &record.last4,
            scopes: &record.scopes,
            allowed_ips: &record.allowed_ips,
            active: record.active,
            limits: &record.limits,
            expires_at,
            quota_exceeded_until,
        },
        generation,
    )
}

/// Checks one compact record (`contract::compact`) the same way.
pub fn validate_compact_record(
    record: &compact::Record,
    generation: u64,
) -> Result<StoredKey, FieldError> {
    check_fields(
        &RecordFields {
            id: &record.id,
            name: &record.name,
            team: &record.team,
            environment: &record.environment,
            prefix: &record.prefix,
            last4: &record.last4,
            scopes: &record.scopes,
            allowed_ips: &record.allowed_ips,
            active: record.active,
            limits: &record.limits,
            expires_at: record.expires_at,
            quota_exceeded_until: record.quota_exceeded_until,
        },
        generation,
    )
}

/// A record that failed validation and was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Position in the page's `keys`.
    pub index: usize,
    /// The key id as sent (for the log; may itself be what was wrong with the record).
    pub id: String,
    pub error: FieldError,
}

/// A snapshot page checked and converted, ready to be written to the store.
#[derive(Debug, Default)]
pub struct ValidPage {
    /// By SHA-256 digest: the store addresses keys by its bytes, never by its hex.
    pub upserts: Vec<(Digest, StoredKey)>,
    /// Hashes to remove: the page's deletions, plus quarantined records whose hash was readable.
    pub deletions: Vec<Digest>,
    pub quarantined: Vec<Quarantined>,
}

/// The id and hash of a JSON record that does not parse as a `KeyRecord`, as far as they can
/// be read: enough to log it and to delete the key it names.
fn identity_of(text: &str) -> (String, Option<Digest>) {
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
    let id = field("id").unwrap_or_default();
    (id, field("hash").as_deref().and_then(parse_hex_digest))
}

/// A JSON record parsed, or the error naming the field that did not parse.
fn parse_record(text: &str) -> Result<KeyRecord, FieldError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { String::new() } else { path };
        let message = error.into_inner().to_string();
        // serde_json appends "at line 1 column N", which says nothing about a record.
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string();
        FieldError::new(field, message)
    })
}

/// One record of a page, read as far as it goes: its id (for the log), its hash when readable
/// (to store it, or to delete it when the record is bad), and the checked record or the error.
struct ReadRecord {
    id: String,
    hash: Option<Digest>,
    stored: Result<StoredKey, FieldError>,
}

fn read_json_record(text: &str, generation: u64) -> ReadRecord {
    match parse_record(text) {
        Ok(record) => ReadRecord {
            stored: validate_record(&record, generation),
            hash: parse_hex_digest(&record.hash),
            id: record.id,
        },
        Err(error) => {
            let (id, hash) = identity_of(text);
            ReadRecord {
                id,
                hash,
                stored: Err(error),
            }
        }
    }
}

fn read_compact_record(body: &[u8], generation: u64) -> ReadRecord {
    match compact::decode_record(body) {
        Ok(record) => ReadRecord {
            stored: validate_compact_record(&record, generation),
            hash: Some(record.hash),
            id: record.id,
        },
        Err(unreadable) => ReadRecord {
            id: unreadable.id,
            hash: unreadable.hash,
            stored: Err(unreadable.error),
        },
    }
}

/// Validates a page in either encoding: records that fail are quarantined (see the module
/// comment); structural damage rejects the page with the reason. Records are stamped with
/// `generation`.
pub fn validate_page(snapshot: &SnapshotPage<'_>, generation: u64) -> Result<ValidPage, String> {
    fields::epoch(&snapshot.epoch).map_err(|e| e.to_string())?;
    let (key_count, deleted_count) = (snapshot.record_count(), snapshot.deleted_count());
    if snapshot.full && deleted_count > 0 {
        return Err("deleted: must be empty in a full snapshot".into());
    }
    // Digests, not hex strings: a million-key load adds no allocation per record here.
    let mut seen: HashSet<Digest> = HashSet::with_capacity(key_count + deleted_count);
    let mut page = ValidPage {
        upserts: Vec::with_capacity(key_count),
        deletions: Vec::with_capacity(deleted_count),
        quarantined: Vec::new(),
    };
    let records: Box<dyn Iterator<Item = ReadRecord> + '_> = match &snapshot.body {
        Body::Json { keys, .. } => Box::new(
            keys.iter()
                .map(move |text| read_json_record(text.get(), generation)),
        ),
        Body::Compact(compact) => Box::new(
            compact
                .records
                .iter()
                .map(move |body| read_compact_record(body, generation)),
        ),
    };
    for (index, record) in records.enumerate() {
        let at = || format!("keys[{index}]");
        if let Some(digest) = record.hash {
            if !seen.insert(digest) {
                return Err(format!("{}.hash: duplicate hash", at()));
            }
        }
        match (record.stored, record.hash) {
            (Ok(stored), Some(hash)) => page.upserts.push((hash, stored)),
            (stored, hash) => {
                let error = match stored {
                    Err(error) if error.field.is_empty() => FieldError::new(at(), error.message),
                    Err(error) => error.within(&at()),
                    Ok(_) => FieldError::new(format!("{}.hash", at()), "unreadable"),
                };
                page.deletions.extend(hash);
                page.quarantined.push(Quarantined {
                    index,
                    id: record.id.chars().take(fields::MAX_LABEL_CHARS).collect(),
                    error,
                });
            }
        }
    }
    let deleted: Vec<Result<Digest, usize>> = match &snapshot.body {
        Body::Json { deleted, .. } => deleted
            .iter()
            .enumerate()
            .map(|(index, hash)| parse_hex_digest(hash).ok_or(index))
            .collect(),
        Body::Compact(compact) => compact.deleted().map(Ok).collect(),
    };
    for (index, digest) in deleted.into_iter().enumerate() {
        let digest =
            digest.map_err(|index| format!("deleted[{index}]: not 64 lowercase hex characters"))?;
        if !seen.insert(digest) {
            return Err(format!(
                "deleted[{index}]: hash also listed in keys or twice"
            ));
        }
        page.deletions.push(digest);
    }
    Ok(page)
}

#[cfg(test)]
mod tests;
