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
mod tests {
    use super::*;
    use crate::key_hash::{digest_key, hash_key};
    use crate::snapshot::Snapshot;

    /// Validates `snapshot` as the filter receives it: serialized, then read as a page.
    fn validate(snapshot: &Snapshot, generation: u64) -> Result<ValidPage, String> {
        let bytes = serde_json::to_vec(snapshot).unwrap();
        validate_page(&SnapshotPage::parse(&bytes).unwrap(), generation)
    }

    /// `snapshot` in the compact encoding; a record that cannot be encoded is sent as the
    /// stand-in the control service sends.
    fn compact_bytes(snapshot: &Snapshot) -> Vec<u8> {
        let records: Vec<u8> = snapshot
            .keys
            .iter()
            .flat_map(|record| {
                compact::encode_record(record).unwrap_or_else(|_| {
                    compact::encode_unreadable(&parse_hex_digest(&record.hash).unwrap(), &record.id)
                })
            })
            .collect();
        let header = compact::PageHeader {
            version: snapshot.version,
            since: snapshot.since,
            full: snapshot.full,
            epoch: snapshot.epoch.clone(),
            next_cursor: snapshot.next_cursor.clone(),
            total_keys: 0,
        };
        let deleted: Vec<Digest> = snapshot
            .deleted
            .iter()
            .map(|hash| parse_hex_digest(hash).unwrap())
            .collect();
        compact::encode_page(&header, snapshot.keys.len() as u32, &records, &deleted).unwrap()
    }

    fn validate_compact(snapshot: &Snapshot, generation: u64) -> Result<ValidPage, String> {
        validate_page(
            &SnapshotPage::parse(&compact_bytes(snapshot)).unwrap(),
            generation,
        )
    }

    fn record(hash: &str) -> KeyRecord {
        KeyRecord {
            id: "key_1".into(),
            hash: hash.into(),
            prefix: "pk_live_".into(),
            last4: "abcd".into(),
            name: "prod".into(),
            team: "team-a".into(),
            environment: "live".into(),
            scopes: vec!["submit_job".into()],
            allowed_ips: vec!["10.0.0.0/8".into(), "::1".into()],
            expires_at: Some("2030-01-01T00:00:00Z".into()),
            active: true,
            plan: "free".into(),
            limits: Limits::default(),
            quota_exceeded_until: None,
        }
    }

    fn snapshot(keys: Vec<KeyRecord>, deleted: Vec<String>, full: bool) -> Snapshot {
        Snapshot {
            version: 1,
            epoch: "e".into(),
            full,
            since: 0,
            keys,
            deleted,
            next_cursor: None,
        }
    }

    #[test]
    fn valid_page_converts_and_round_trips() {
        let page = validate(&snapshot(vec![record(&"a".repeat(64))], vec![], true), 9).unwrap();
        let (hash, stored) = &page.upserts[0];
        assert_eq!(hash, &[0xaa; 32], "the hash {}", "a".repeat(64));
        assert_eq!(stored.generation, 9);
        assert_eq!(stored.expires_at, Some(1_893_456_000));
        assert!(page.quarantined.is_empty());
    }

    #[test]
    fn long_unicode_names_and_teams_are_accepted() {
        let mut long = record(&hash_key("long"));
        long.name = "🔑".repeat(128);
        long.team = "東".repeat(128);
        let page = validate(&snapshot(vec![long.clone()], vec![], true), 1).unwrap();
        let stored = &page.upserts[0].1;
        assert_eq!(stored.name, long.name);
        assert_eq!(stored.team, long.team);
    }

    #[test]
    fn one_bad_record_is_quarantined_and_the_rest_apply() {
        let good = record(&hash_key("good"));
        let mut bad_cidr = record(&hash_key("cidr"));
        bad_cidr.id = "key_cidr".into();
        bad_cidr.allowed_ips = vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()];
        let mut bad_hash = record("ABC");
        bad_hash.id = "key_hash".into();
        let mut bad_expiry = record(&hash_key("expiry"));
        bad_expiry.expires_at = Some("tomorrow".into());
        let mut bad_name = record(&hash_key("name"));
        bad_name.name = "evil\r\nx-injected: 1".into();
        let mut too_long = record(&hash_key("long"));
        too_long.team = "東".repeat(129);
        let mut zero_limit = record(&hash_key("zero"));
        zero_limit.limits.per_minute = Some(0);
        let keys = vec![
            bad_cidr, good, bad_hash, bad_expiry, bad_name, too_long, zero_limit,
        ];
        let page = validate(&snapshot(keys, vec![], false), 1).unwrap();
        assert_eq!(page.upserts.len(), 1);
        assert_eq!(page.upserts[0].0, digest_key("good"));
        let errors: Vec<String> = page
            .quarantined
            .iter()
            .map(|q| q.error.to_string())
            .collect();
        let expected = [
            "keys[0].allowed_ips[1]: invalid IP or CIDR",
            "keys[2].hash:",
            "keys[3].expires_at:",
            "keys[4].name: must not contain control characters",
            "keys[5].team: must be at most 128 characters",
            "keys[6].limits.per_minute:",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:?}");
        for (error, prefix) in errors.iter().zip(expected) {
            assert!(error.starts_with(prefix), "{error} vs {prefix}");
        }
        assert_eq!(page.quarantined[0].id, "key_cidr");
        // Every quarantined record with a readable hash is removed, never left at an older
        // version; the one without a readable hash cannot be addressed at all.
        assert_eq!(
            page.deletions,
            vec![
                digest_key("cidr"),
                digest_key("expiry"),
                digest_key("name"),
                digest_key("long"),
                digest_key("zero")
            ]
        );
    }

    #[test]
    fn structural_damage_rejects_the_page() {
        let good = record(&hash_key("good"));
        let cases = [
            (
                snapshot(vec![good.clone(), good.clone()], vec![], true),
                "keys[1].hash: duplicate",
            ),
            (snapshot(vec![], vec!["zz".into()], false), "deleted[0]"),
            (snapshot(vec![], vec!["a".repeat(64)], true), "deleted:"),
            (
                snapshot(vec![good.clone()], vec![hash_key("good")], false),
                "deleted[0]: hash also listed",
            ),
        ];
        for (page, expected) in cases {
            let err = validate(&page, 1).unwrap_err();
            assert!(err.starts_with(expected), "{err}");
        }
        let mut bad_epoch = snapshot(vec![good], vec![], true);
        bad_epoch.epoch = "x&since=0".into();
        assert!(validate(&bad_epoch, 1).unwrap_err().starts_with("epoch:"));
    }

    #[test]
    fn a_record_that_does_not_parse_is_quarantined_by_id_and_hash() {
        let good = serde_json::to_string(&record(&hash_key("good"))).unwrap();
        let body = format!(
            r#"{{"version":2,"full":false,"since":1,"keys":[
                {{"id":"key_neg","hash":"{}","limits":{{"per_minute":-1}}}},
                {good},
                {{"id":7,"hash":"{}"}},
                "not a record"]}}"#,
            hash_key("negative"),
            hash_key("number_id")
        );
        let page = validate_page(&SnapshotPage::parse(body.as_bytes()).unwrap(), 1).unwrap();
        assert_eq!(page.upserts.len(), 1);
        let errors: Vec<(String, String)> = page
            .quarantined
            .iter()
            .map(|q| (q.id.clone(), q.error.field.clone()))
            .collect();
        assert_eq!(
            errors,
            [
                (
                    "key_neg".to_string(),
                    "keys[0].limits.per_minute".to_string()
                ),
                (String::new(), "keys[2].id".to_string()),
                (String::new(), "keys[3]".to_string()),
            ]
        );
        assert!(
            page.quarantined[0]
                .error
                .message
                .starts_with("invalid value"),
            "{:?}",
            page.quarantined[0].error
        );
        assert_eq!(
            page.deletions,
            vec![digest_key("negative"), digest_key("number_id")]
        );
    }

    #[test]
    fn both_encodings_reach_the_same_page() {
        let mut bad_cidr = record(&hash_key("cidr"));
        bad_cidr.allowed_ips = vec!["10.0.0.0/33".into()];
        let mut bad_name = record(&hash_key("name"));
        bad_name.name = "evil\r\nx-injected: 1".into();
        let mut zero_limit = record(&hash_key("zero"));
        zero_limit.limits.per_minute = Some(0);
        let mut quota = record(&hash_key("quota"));
        quota.quota_exceeded_until = Some("2031-05-06T07:08:09Z".into());
        quota.expires_at = None;
        let keys = vec![
            bad_cidr,
            record(&hash_key("good")),
            bad_name,
            zero_limit,
            quota,
        ];
        let mut delta = snapshot(keys.clone(), vec![hash_key("gone")], false);
        delta.next_cursor = Some("c1.2".into());
        for page in [delta, snapshot(keys, vec![], true)] {
            let json = validate(&page, 3).unwrap();
            let compact = validate_compact(&page, 3).unwrap();
            assert_eq!(compact.upserts, json.upserts);
            assert_eq!(compact.deletions, json.deletions);
            assert_eq!(compact.quarantined, json.quarantined);
            assert_eq!(json.upserts.len(), 2);
            assert_eq!(json.quarantined.len(), 3);
            let bytes = compact_bytes(&page);
            let parsed = SnapshotPage::parse(&bytes).unwrap();
            assert_eq!(parsed.next_cursor, page.next_cursor);
            assert_eq!((parsed.version, parsed.full), (1, page.full));
        }
    }

    #[test]
    fn a_compact_record_that_does_not_decode_is_quarantined_by_id_and_hash() {
        let mut unencodable = record(&hash_key("expiry"));
        unencodable.id = "key_expiry".into();
        unencodable.expires_at = Some("tomorrow".into());
        let page = snapshot(vec![unencodable, record(&hash_key("good"))], vec![], false);
        let page = validate_compact(&page, 1).unwrap();
        assert_eq!(page.upserts.len(), 1);
        assert_eq!(page.deletions, vec![digest_key("expiry")]);
        assert_eq!(page.quarantined[0].id, "key_expiry");
        assert_eq!(
            page.quarantined[0].error.to_string(),
            "keys[0].prefix: truncated"
        );
    }

    #[test]
    fn compact_structural_damage_rejects_the_page_as_json_does() {
        let good = record(&hash_key("good"));
        let cases = [
            (
                snapshot(vec![good.clone(), good.clone()], vec![], true),
                "keys[1].hash: duplicate",
            ),
            (
                snapshot(vec![good.clone()], vec![hash_key("good")], false),
                "deleted[0]: hash also listed",
            ),
            (snapshot(vec![], vec!["a".repeat(64)], true), "deleted:"),
        ];
        for (page, expected) in cases {
            let err = validate_compact(&page, 1).unwrap_err();
            assert!(err.starts_with(expected), "{err}");
            assert_eq!(err, validate(&page, 1).unwrap_err());
        }
        let mut bad_epoch = snapshot(vec![good], vec![], true);
        bad_epoch.epoch = "x&since=0".into();
        assert!(validate_compact(&bad_epoch, 1)
            .unwrap_err()
            .starts_with("epoch:"));
    }

    #[test]
    fn compact_instants_outside_what_rfc3339_writes_are_quarantined() {
        let mut far = compact::decode_record(
            &compact::encode_record(&record(&hash_key("far"))).unwrap()[4..],
        )
        .unwrap();
        far.expires_at = Some(i64::MAX);
        let error = validate_compact_record(&far, 1).unwrap_err();
        assert_eq!(error.field, "expires_at");
        far.expires_at = Some(253_402_300_799);
        assert!(validate_compact_record(&far, 1).is_ok());
    }

    #[test]
    fn allowlists_are_stored_canonical() {
        let mut mapped = record(&hash_key("m"));
        mapped.allowed_ips = vec![
            "::ffff:127.0.0.1".into(),
            "10.0.0.1/8".into(),
            "10.0.0.0/8".into(),
        ];
        let page = validate(&snapshot(vec![mapped], vec![], true), 1).unwrap();
        let nets: Vec<String> = page.upserts[0]
            .1
            .allowed_ips
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8"]);
    }
}
