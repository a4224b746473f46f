use super::*;
use crate::key_hash::{digest_key, hex_digest};

fn key_record(secret: &str) -> KeyRecord {
    KeyRecord {
        id: format!("key_{secret}"),
        hash: hex_digest(&digest_key(secret)),
        prefix: "pk_live_".into(),
        last4: "wxyz".into(),
        name: "Prod 🔑".into(),
        team: "team-a".into(),
        environment: "live".into(),
        scopes: vec!["submit_job".into(), "list_models".into()],
        allowed_ips: vec!["10.0.0.0/8".into(), "::1".into()],
        expires_at: Some("2030-01-01T00:00:00Z".into()),
        active: true,
        plan: "free".into(),
        limits: Limits {
            per_minute: Some(60),
            per_day: Some(u64::MAX),
            ..Limits::default()
        },
        quota_exceeded_until: Some("2029-12-31T23:00:00+01:00".into()),
    }
}

fn header(full: bool, cursor: Option<&str>) -> PageHeader {
    PageHeader {
        version: 42,
        since: if full { 0 } else { 40 },
        full,
        epoch: "Ep0ch".into(),
        next_cursor: cursor.map(str::to_string),
        total_keys: if full { 1_000_000 } else { 0 },
    }
}

/// A page of `records` framed records and `deleted` deletions.
fn page(header: &PageHeader, records: &[KeyRecord], deleted: &[Digest]) -> Vec<u8> {
    let bytes: Vec<u8> = records
        .iter()
        .flat_map(|record| encode_record(record).unwrap())
        .collect();
    encode_page(header, records.len() as u32, &bytes, deleted).unwrap()
}

/// The body of a framed record.
fn body(framed: &[u8]) -> &[u8] {
    let length = u32::from_le_bytes(framed[..4].try_into().unwrap()) as usize;
    assert_eq!(framed.len(), 4 + length);
    &framed[4..]
}

#[test]
fn a_record_round_trips_with_parsed_hash_and_instants() {
    let record = key_record("a");
    let decoded = decode_record(body(&encode_record(&record).unwrap())).unwrap();
    assert_eq!(
        decoded,
        Record {
            hash: digest_key("a"),
            id: "key_a".into(),
            prefix: "pk_live_".into(),
            last4: "wxyz".into(),
            name: "Prod 🔑".into(),
            team: "team-a".into(),
            environment: "live".into(),
            plan: "free".into(),
            scopes: record.scopes.clone(),
            allowed_ips: record.allowed_ips.clone(),
            active: true,
            expires_at: Some(1_893_456_000),
            quota_exceeded_until: Some(1_893_448_800),
            limits: record.limits.clone(),
        }
    );
    let mut bare = key_record("b");
    (bare.expires_at, bare.quota_exceeded_until, bare.active) = (None, None, false);
    (bare.scopes, bare.allowed_ips, bare.limits) = (vec![], vec![], Limits::default());
    let decoded = decode_record(body(&encode_record(&bare).unwrap())).unwrap();
    assert_eq!((decoded.expires_at, decoded.active), (None, false));
    assert_eq!(decoded.limits, Limits::default());
    assert!(decoded.scopes.is_empty() && decoded.allowed_ips.is_empty());
}

#[test]
fn a_page_round_trips() {
    let deleted = [digest_key("gone"), digest_key("also gone")];
    for (header, records) in [
        (
            header(true, Some("h2a.ff")),
            vec![key_record("a"), key_record("b")],
        ),
        (header(false, None), vec![key_record("c")]),
        (header(true, None), vec![]),
    ] {
        let deletions: &[Digest] = if header.full { &[] } else { &deleted };
        let bytes = page(&header, &records, deletions);
        assert!(is_compact(&bytes));
        let decoded = decode_page(&bytes).unwrap();
        assert_eq!(decoded.header, header);
        assert_eq!(decoded.records.len(), records.len());
        for (body, record) in decoded.records.iter().zip(&records) {
            assert_eq!(decode_record(body).unwrap().id, record.id);
        }
        assert_eq!(decoded.deleted().collect::<Vec<_>>(), deletions);
    }
}

#[test]
fn every_truncated_page_is_rejected() {
    let bytes = page(
        &header(false, Some("c1")),
        &[key_record("a")],
        &[digest_key("x")],
    );
    for length in 0..bytes.len() {
        assert!(decode_page(&bytes[..length]).is_err(), "length {length}");
    }
}

#[test]
fn every_truncated_record_is_unreadable_with_what_identity_it_has() {
    let framed = encode_record(&key_record("a")).unwrap();
    let full = body(&framed);
    let id_end = 32 + 2 + "key_a".len();
    for length in 0..full.len() {
        let unreadable = decode_record(&full[..length]).unwrap_err();
        assert_eq!(unreadable.hash.is_some(), length >= 32, "length {length}");
        let id = if length >= id_end { "key_a" } else { "" };
        assert_eq!(unreadable.id, id, "length {length}");
        assert_eq!(unreadable.error.message, "truncated", "length {length}");
    }
}

#[test]
fn bytes_appended_by_a_newer_encoder_are_ignored() {
    let mut record = body(&encode_record(&key_record("a")).unwrap()).to_vec();
    let expected = decode_record(&record).unwrap();
    record.extend_from_slice(b"a field from the future");
    assert_eq!(decode_record(&record).unwrap(), expected);

    // A header with an extra field: the header length covers it.
    let bytes = page(&header(true, None), &[key_record("a")], &[]);
    let header_length = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let mut longer = bytes[..8].to_vec();
    longer.extend_from_slice(&(header_length as u32 + 3).to_le_bytes());
    longer.extend_from_slice(&bytes[12..12 + header_length]);
    longer.extend_from_slice(b"new");
    longer.extend_from_slice(&bytes[12 + header_length..]);
    let decoded = decode_page(&longer).unwrap();
    assert_eq!(decoded.header, header(true, None));
    assert_eq!(decoded.records.len(), 1);
}

#[test]
fn bytes_after_the_deletions_reject_the_page() {
    let mut bytes = page(&header(false, None), &[], &[digest_key("x")]);
    bytes.push(0);
    assert_eq!(
        decode_page(&bytes).unwrap_err().0,
        "page: bytes after the deletions"
    );
}

/// Overwrites the header's record and deletion counts (its last 8 bytes).
fn with_counts(bytes: &[u8], records: u32, deleted: u32) -> Vec<u8> {
    let header_length = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let counts = 12 + header_length - 8;
    let mut bytes = bytes.to_vec();
    bytes[counts..counts + 4].copy_from_slice(&records.to_le_bytes());
    bytes[counts + 4..counts + 8].copy_from_slice(&deleted.to_le_bytes());
    bytes
}

#[test]
fn huge_counts_are_rejected_before_anything_is_allocated() {
    let bytes = page(&header(false, None), &[key_record("a")], &[digest_key("x")]);
    let cases = [
        (u32::MAX, 1, "records: count larger than the page"),
        (2, 1, "keys[1]: frame runs past the page"),
        (1, u32::MAX, "deleted: count larger than the page"),
        (1, 2, "deleted: count larger than the page"),
        (0, 1, "page: bytes after the deletions"),
    ];
    for (records, deleted, expected) in cases {
        let error = decode_page(&with_counts(&bytes, records, deleted)).unwrap_err();
        assert_eq!(error.0, expected, "{records} {deleted}");
    }
    // A record claiming 65535 scopes in a short body.
    let mut record = digest_key("a").to_vec();
    for _ in 0..7 {
        record.extend_from_slice(&1u16.to_le_bytes());
        record.push(b'x');
    }
    record.extend_from_slice(&u16::MAX.to_le_bytes());
    let unreadable = decode_record(&record).unwrap_err();
    assert_eq!(
        (unreadable.id.as_str(), unreadable.error.field.as_str()),
        ("x", "scopes")
    );
}

#[test]
fn wrong_magic_and_other_versions_are_told_apart() {
    let bytes = page(&header(true, None), &[], &[]);
    let mut newer = bytes.clone();
    newer[7] = 2;
    assert_eq!(
        decode_page(&newer).unwrap_err().0,
        "unsupported compact snapshot version"
    );
    assert_eq!(
        decode_page(b"{\"version\":1}").unwrap_err().0,
        "not a compact snapshot"
    );
    assert!(!is_compact(b"{\"version\":1}"));
    assert!(!is_compact(b"KGSNAP"));
}

#[test]
fn text_that_is_not_utf8_is_named() {
    let mut record = body(&encode_record(&key_record("a")).unwrap()).to_vec();
    let name_at = 32 + 2 + "key_a".len() + 2 + "pk_live_".len() + 2 + "wxyz".len() + 2;
    record[name_at] = 0xff;
    let unreadable = decode_record(&record).unwrap_err();
    assert_eq!(unreadable.error.to_string(), "name: not UTF-8");
    assert_eq!(unreadable.id, "key_a");
    let mut bytes = page(&header(true, None), &[], &[]);
    bytes[12 + 17 + 2] = 0xff;
    assert_eq!(decode_page(&bytes).unwrap_err().0, "epoch: not UTF-8");
}

#[test]
fn garbage_never_panics() {
    // A fixed xorshift stream: the same garbage every run, after the magic and without it.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let valid = page(
        &header(false, Some("c")),
        &[key_record("a")],
        &[digest_key("x")],
    );
    for round in 0..2_000 {
        let length = round % 300;
        let mut bytes = if round % 2 == 0 {
            MAGIC.to_vec()
        } else {
            vec![]
        };
        for _ in 0..length {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(state as u8);
        }
        if let Ok(page) = decode_page(&bytes) {
            for record in &page.records {
                let _ = decode_record(record);
            }
        }
        let _ = decode_record(&bytes);
        // One flipped byte anywhere in a valid page.
        let mut flipped = valid.clone();
        let at = (state as usize) % flipped.len();
        flipped[at] ^= (state >> 8) as u8 | 1;
        if let Ok(page) = decode_page(&flipped) {
            for record in &page.records {
                let _ = decode_record(record);
            }
        }
    }
}

#[test]
fn what_cannot_be_encoded_is_named_and_the_stand_in_is_quarantined() {
    let mut record = key_record("a");
    record.expires_at = Some("tomorrow".into());
    assert_eq!(encode_record(&record).unwrap_err().field, "expires_at");
    record.hash = "ABC".into();
    assert_eq!(encode_record(&record).unwrap_err().field, "hash");
    let stand_in = encode_unreadable(&digest_key("a"), "key_a");
    let unreadable = decode_record(body(&stand_in)).unwrap_err();
    assert_eq!(unreadable.hash, Some(digest_key("a")));
    assert_eq!(unreadable.id, "key_a");
    assert_eq!(unreadable.error.field, "prefix");
    let long_id = "é".repeat(40_000);
    let unreadable = decode_record(body(&encode_unreadable(&digest_key("a"), &long_id)));
    assert_eq!(unreadable.unwrap_err().id.len(), 65_534);
}
