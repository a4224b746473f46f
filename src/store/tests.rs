//! The key store in a `FakeHost`: full loads and deltas, the layout an older filter left,
//! sweeps, fencing, CAS retries, garbage entries.

use super::*;
use crate::host::FakeHost;
use crate::store::key::StoredKey;
use keygate_contract::key_hash::{digest_key, hash_key};
use keygate_contract::snapshot::Limits;

fn stored(id: &str) -> StoredKey {
    StoredKey {
        generation: 0,
        id: id.into(),
        name: id.into(),
        team: String::new(),
        environment: "live".into(),
        prefix: "pk_live_".into(),
        scopes: vec![],
        allowed_ips: vec![],
        expires_at: None,
        active: true,
        limits: Limits::default(),
        quota_exceeded_until: None,
    }
}

fn page(upserts: &[&str], deletions: &[&str]) -> ValidPage {
    ValidPage {
        upserts: upserts
            .iter()
            .map(|secret| (digest_key(secret), stored(secret)))
            .collect(),
        deletions: deletions.iter().map(|secret| digest_key(secret)).collect(),
        quarantined: vec![],
    }
}

fn id_of(host: &FakeHost, secret: &str, generation: u64) -> Option<String> {
    let found = lookup(host, &hash_key(secret), generation)?;
    Some(found.view()?.id.to_string())
}

#[test]
fn a_full_load_fills_the_spare_set_and_goes_live_all_at_once() {
    let host = FakeHost::at(1);
    write_page(&host, &page(&["a", "b"], &[]), 2).unwrap();
    assert_eq!(id_of(&host, "a", 2).as_deref(), Some("a"));
    // A new full snapshot (generation 3, the other set) only has `a`. While it is being
    // written generation 2 is still current, and both keys keep working.
    write_page(&host, &page(&["a"], &[]), 3).unwrap();
    assert!(id_of(&host, "a", 2).is_some() && id_of(&host, "b", 2).is_some());
    // After the switch only `a` does.
    assert!(id_of(&host, "a", 3).is_some());
    assert!(id_of(&host, "b", 3).is_none());
    // A later full load into set 0 (generation 4) does not see generation 2's shards.
    write_page(&host, &page(&["c"], &[]), 4).unwrap();
    assert!(id_of(&host, "a", 4).is_none() && id_of(&host, "c", 4).is_some());
}

#[test]
fn deltas_rewrite_shards_in_place_and_count() {
    let host = FakeHost::at(1);
    let change = write_page(&host, &page(&["a"], &[]), 2).unwrap();
    assert_eq!((change.keys, change.limited), (1, 0));
    assert_eq!(write_page(&host, &page(&["a"], &[]), 2).unwrap().keys, 0);
    let change = write_page(&host, &page(&["b"], &["a"]), 2).unwrap();
    assert_eq!(change.keys, 0);
    assert!(id_of(&host, "a", 2).is_none());
    assert!(id_of(&host, "b", 2).is_some());
    let mut limited = page(&["b"], &[]);
    limited.upserts[0].1.limits.per_minute = Some(5);
    assert_eq!(write_page(&host, &limited, 2).unwrap().limited, 1);
    assert_eq!(
        write_page(&host, &page(&[], &["b"]), 2).unwrap(),
        Change {
            keys: -1,
            limited: -1
        }
    );
}

#[test]
fn a_million_keys_would_be_a_bounded_number_of_entries() {
    // 5,000 keys land in at most 5,000 shards, each written once per page.
    let host = FakeHost::at(1);
    let secrets: Vec<String> = (0..5_000).map(|i| format!("key{i}")).collect();
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_eq!(write_page(&host, &page(&refs, &[]), 2).unwrap().keys, 5_000);
    for secret in refs.iter().step_by(97) {
        assert_eq!(id_of(&host, secret, 2).as_deref(), Some(*secret));
    }
    assert!(host.entry_count() <= 5_000);
    // Rotating every key (delete the old hash, add a new one), twice, leaves nothing behind:
    // the entries stay within the shard space and their bytes do not grow beyond a header
    // per shard.
    let before = host.value_bytes();
    let mut current = refs.clone();
    let names: Vec<Vec<String>> = (1..=2)
        .map(|round| secrets.iter().map(|s| format!("{s}-{round}")).collect())
        .collect();
    for round in &names {
        let rotated: Vec<&str> = round.iter().map(String::as_str).collect();
        write_page(&host, &page(&rotated, &current), 2).unwrap();
        current = rotated;
    }
    assert!(host.entry_count() <= shard::SHARD_COUNT as usize);
    assert!(host.value_bytes() <= before + 13 * host.entry_count());
    assert!(id_of(&host, "key7", 2).is_none() && id_of(&host, "key7-2", 2).is_some());
}

#[test]
fn a_store_an_older_filter_left_serves_until_ours_is_loaded() {
    let host = FakeHost::at(1);
    let mut legacy_meta = 42u64.to_le_bytes().to_vec();
    legacy_meta.extend_from_slice(&1_000u64.to_le_bytes());
    // The rest of a layout-1 record (fence … format): 52 bytes before the epoch.
    legacy_meta.extend_from_slice(&[0; 52 - 16]);
    host.set_shared(LEGACY_VIEW_KEY, &legacy_meta, None)
        .unwrap();
    let old = StoredKey {
        generation: 42,
        ..stored("old")
    };
    host.set_shared(&legacy_slot(&digest_key("old")), &codec::encode(&old), None)
        .unwrap();
    let view = read_view(&host);
    assert_eq!((view.generation, view.legacy), (42, true));
    let found = lookup_digest(&host, &digest_key("old"), &view).unwrap();
    assert_eq!(found.view().unwrap().id, "old");
    // Our first load reserved the record but has not published: still the old store.
    update_meta(&host, 1, StoreMeta::clone).unwrap();
    assert!(read_view(&host).legacy);
    // Published: ours, and the old entries are no longer read.
    write_page(&host, &page(&["new"], &[]), 7).unwrap();
    update_meta(&host, 1, |m| StoreMeta {
        generation: 7,
        last_success_ms: 2_000,
        ..m.clone()
    })
    .unwrap();
    let view = read_view(&host);
    assert_eq!((view.generation, view.legacy), (7, false));
    assert!(lookup_digest(&host, &digest_key("old"), &view).is_none());
    assert!(lookup_digest(&host, &digest_key("new"), &view).is_some());
}

#[test]
fn a_replaced_set_is_swept_but_a_newer_load_into_it_is_kept() {
    let host = FakeHost::at(1);
    let secrets: Vec<String> = (0..300).map(|i| format!("key{i}")).collect();
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    write_page(&host, &page(&refs, &[]), 2).unwrap();
    write_page(&host, &page(&["x"], &[]), 3).unwrap();
    let before = host.value_bytes();
    // Generation 3 is live: generation 2's set (parity 0) is swept, 3's is not touched.
    let emptied = sweep_replaced(&host, 0, 3, 0..shard::SHARD_COUNT);
    assert!(emptied > 250, "{emptied}");
    assert!(host.value_bytes() < before / 10);
    assert!(id_of(&host, "x", 3).is_some());
    // A newer load (generation 4) writing into the swept set keeps its shards.
    write_page(&host, &page(&["y"], &[]), 4).unwrap();
    assert_eq!(sweep_replaced(&host, 0, 3, 0..shard::SHARD_COUNT), 0);
    assert!(id_of(&host, "y", 4).is_some());
}

#[test]
fn meta_updates_retry_on_cas_conflicts() {
    let host = FakeHost::at(1);
    host.fail_next_cas.set(3);
    let meta = update_meta(&host, 1, |m| StoreMeta {
        version: m.version + 1,
        ..m.clone()
    })
    .unwrap();
    assert_eq!(meta.version, 1);
    assert_eq!(read_meta(&host).version, 1);
    let meta = update_meta(&host, 1, |m| StoreMeta {
        generation: 7,
        last_success_ms: 99,
        limited_keys: 3,
        epoch: "E-1".into(),
        ..m.clone()
    })
    .unwrap();
    assert_eq!(
        read_view(&host),
        StoreView {
            generation: 7,
            last_success_ms: 99,
            legacy: false,
        }
    );
    assert_eq!(meta.generation, 7);
    assert_eq!(read_meta(&host), meta);
    host.fail_next_cas.set(CAS_RETRIES as u32);
    assert_eq!(
        update_meta(&host, 1, |m| m.clone()),
        Err(MetaError::Write(WriteError::CasMismatch))
    );
}

#[test]
fn an_older_fence_can_never_write_the_record() {
    let host = FakeHost::at(1);
    update_meta(&host, 5, |m| StoreMeta {
        generation: 10,
        ..m.clone()
    })
    .unwrap();
    assert_eq!(
        update_meta(&host, 4, |m| StoreMeta {
            generation: 11,
            ..m.clone()
        }),
        Err(MetaError::Fenced)
    );
    assert_eq!(read_meta(&host).generation, 10);
    assert_eq!(read_meta(&host).fence, 5);
    // The same or a newer holder may; the high water never goes down.
    let meta = update_meta(&host, 6, |m| StoreMeta {
        generation: 3,
        ..m.clone()
    })
    .unwrap();
    assert_eq!((meta.generation, meta.high_water, meta.fence), (3, 10, 6));
}

#[test]
fn shard_keys_name_the_set_and_the_shard() {
    assert_eq!(ShardKey::new(6, 0x00ff).as_str(), "s0:00ff");
    assert_eq!(ShardKey::new(7, 0xab01).as_str(), "s1:ab01");
    // SHA-256("abc"), base64url without padding.
    assert_eq!(
        legacy_slot(&digest_key("abc")),
        "k:ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    );
}

#[test]
fn garbage_entries_read_as_absent() {
    let host = FakeHost::at(1);
    let digest = digest_key("a");
    host.set_shared(
        ShardKey::new(2, shard::shard_of(&digest)).as_str(),
        b"{not json",
        None,
    )
    .unwrap();
    assert!(lookup(&host, &hash_key("a"), 2).is_none());
    assert!(lookup(&host, "zz", 2).is_none());
    host.set_shared(VIEW_KEY, b"short", None).unwrap();
    assert_eq!(read_meta(&host), StoreMeta::default());
    assert_eq!(read_view(&host), StoreView::default());
}
