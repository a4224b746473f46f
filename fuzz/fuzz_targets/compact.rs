//! The compact snapshot decoder (`contract::compact`) and `contract::record::validate_page` over
//! compact pages.
//!
//! Invariants: never panics on any bytes; a page that decodes re-encodes (header, record bodies,
//! deletions) to bytes that decode to the same parts; every record body either decodes or is
//! unreadable with the hash of its first 32 bytes when it has them; a page that validates
//! accounts for every record (applied or quarantined), applies only records that decode, under
//! their own hash, and lists only well-formed hashes for deletion.
#![no_main]

use keygate_contract::compact::{self, decode_page, decode_record, encode_page, MAGIC};
use keygate_contract::key_hash::hex_digest;
use keygate_contract::page::SnapshotPage;
use keygate_contract::record::validate_page;
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) {
    let Ok(page) = decode_page(data) else {
        return;
    };
    let mut records = Vec::new();
    for body in &page.records {
        records.extend_from_slice(&(body.len() as u32).to_le_bytes());
        records.extend_from_slice(body);
        match decode_record(body) {
            Ok(record) => assert_eq!(record.hash.as_slice(), &body[..32]),
            Err(unreadable) => {
                assert_eq!(
                    unreadable.hash.map(|hash| hash.to_vec()),
                    body.get(..32).map(<[u8]>::to_vec)
                )
            }
        }
    }
    let deleted: Vec<_> = page.deleted().collect();
    let again = encode_page(&page.header, page.records.len() as u32, &records, &deleted)
        .expect("a decoded header re-encodes");
    let decoded = decode_page(&again).expect("a re-encoded page decodes");
    assert_eq!(decoded.header, page.header);
    assert_eq!(decoded.records, page.records);
    assert_eq!(decoded.deleted().collect::<Vec<_>>(), deleted);

    let parsed = SnapshotPage::parse(data).expect("a compact page parses as a snapshot page");
    assert_eq!(parsed.total_keys, page.header.total_keys);
    let Ok(valid) = validate_page(&parsed, 7) else {
        return;
    };
    assert_eq!(
        valid.upserts.len() + valid.quarantined.len(),
        page.records.len()
    );
    let applied = page
        .records
        .iter()
        .enumerate()
        .filter(|(index, _)| !valid.quarantined.iter().any(|q| q.index == *index));
    for ((hash, stored), (_, body)) in valid.upserts.iter().zip(applied) {
        let record = decode_record(body).expect("an applied record decodes");
        assert_eq!(hash, &record.hash);
        assert_eq!(stored.id, record.id);
        assert_eq!(stored.scopes, record.scopes);
        assert_eq!(stored.expires_at, record.expires_at);
        assert_eq!(stored.generation, 7);
    }
    for hash in &valid.deletions {
        let hex = hex_digest(hash);
        assert!(hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = compact::is_compact(data);
    check(data);
    // Most random inputs lack the magic: try each behind it too.
    let mut prefixed = MAGIC.to_vec();
    prefixed.extend_from_slice(data);
    check(&prefixed);
});
