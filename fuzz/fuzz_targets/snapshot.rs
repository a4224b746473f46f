//! `Snapshot::from_slice`, `contract::record::validate_page` and the stored-key codec.
//!
//! Invariants: never panics; a parsed page round-trips through `serde_json::to_vec`; a page
//! that validates yields only well-formed records, each of which decodes back from its encoded
//! form unchanged; every record is either applied or quarantined (and then, if its hash is
//! readable, deleted); and decoding arbitrary bytes as a stored key is stable.
#![no_main]

use keygate_contract::key_hash::hex_digest;
use keygate_contract::page::SnapshotPage;
use keygate_contract::record::validate_page;
use keygate_contract::snapshot::{PageText, Snapshot};
use keygate::store::codec;
use libfuzzer_sys::fuzz_target;

fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fuzz_target!(|data: &[u8]| {
    if let Some(decoded) = codec::decode(data) {
        assert_eq!(
            codec::decode(&codec::encode(&decoded)).as_ref(),
            Some(&decoded)
        );
    }

    if let Ok(snapshot) = Snapshot::from_slice(data) {
        let bytes = serde_json::to_vec(&snapshot).unwrap();
        assert_eq!(Snapshot::from_slice(&bytes).as_ref().ok(), Some(&snapshot));
    }

    let Ok(page_text) = PageText::parse(data) else {
        return;
    };
    let snapshot_page = SnapshotPage::parse(data).expect("a JSON page parses as a snapshot page");
    let Ok(page) = validate_page(&snapshot_page, 7) else {
        return;
    };
    // Records as parsed, for the ones that parse.
    let parsed: Vec<Option<keygate_contract::snapshot::KeyRecord>> = page_text
        .keys
        .iter()
        .map(|raw| serde_json::from_str(raw.get()).ok())
        .collect();
    let snapshot = Snapshot {
        version: page_text.version,
        epoch: page_text.epoch.clone(),
        full: page_text.full,
        since: page_text.since,
        keys: Vec::new(),
        deleted: page_text.deleted.clone(),
        next_cursor: None,
    };
    assert_eq!(
        page.upserts.len() + page.quarantined.len(),
        page_text.keys.len()
    );
    let applied = parsed
        .iter()
        .enumerate()
        .filter(|(index, _)| !page.quarantined.iter().any(|q| q.index == *index))
        .map(|(_, record)| record.as_ref().expect("an applied record parses"));
    for ((hash, stored), record) in page.upserts.iter().zip(applied) {
        assert!(is_hash(&record.hash));
        assert_eq!(hex_digest(hash), record.hash);
        assert_eq!(stored.generation, 7);
        assert_eq!(stored.id, record.id);
        assert_eq!(stored.scopes, record.scopes);
        assert!(stored.allowed_ips.len() <= record.allowed_ips.len());
        assert_eq!(stored.active, record.active);
        assert_eq!(stored.limits, record.limits);
        for net in &stored.allowed_ips {
            assert_eq!(*net, net.trunc());
        }
        for text in [
            &stored.id,
            &stored.name,
            &stored.team,
            &stored.environment,
            &stored.prefix,
        ]
        .into_iter()
        .chain(&stored.scopes)
        {
            assert!(
                !text.chars().any(char::is_control),
                "control character kept: {text:?}"
            );
        }
        let encoded = codec::encode(stored);
        assert_eq!(
            codec::decode(&encoded).as_ref(),
            Some(stored),
            "stored key does not survive its own codec"
        );
    }
    for hash in &page.deletions {
        assert!(is_hash(&hex_digest(hash)));
    }
    assert!(page.deletions.len() >= snapshot.deleted.len());
    assert!(page.deletions.len() <= snapshot.deleted.len() + page.quarantined.len());
    if snapshot.full {
        assert!(snapshot.deleted.is_empty());
    }
});
