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
    let mut far =
        compact::decode_record(&compact::encode_record(&record(&hash_key("far"))).unwrap()[4..])
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
