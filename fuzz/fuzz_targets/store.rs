//! The sharded key store's reads (`store::shard`, `store::record`): what a request does with
//! the bytes of a shared-data entry.
//!
//! Invariants: never panics on any bytes; a shard that parses yields each of its entries back
//! through `find`, and every record it holds either decodes as a `KeyView` or reads as absent;
//! a record that decodes answers the decision's questions without panicking; a merge of the
//! parsed shard with no edits rebuilds the same entries.
#![no_main]

use keygate_contract::key_hash::digest_key;
use keygate::store::key::KeyFacts;
use keygate::store::record::KeyView;
use keygate::store::shard::{self, Shard};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(view) = KeyView::decode(data) {
        let _ = view.allows_ip(Some("10.1.2.3".parse().unwrap()));
        let _ = view.allows_ip(Some("::ffff:10.1.2.3".parse().unwrap()));
        let _ = view.has_scope("submit_job");
        let _ = view.allowed_ips().count();
    }
    let Some(generation) = shard::generation_of(data) else {
        return;
    };
    let Some(parsed) = Shard::parse(data, generation) else {
        return;
    };
    let entries: Vec<_> = parsed.entries().collect();
    for (_, record) in &entries {
        let _ = KeyView::decode(record);
    }
    let _ = parsed.find(&digest_key(&format!("{}", data.len())));
    let (rebuilt, change) = shard::merge(Some(&parsed), generation, &[]);
    assert_eq!(change, shard::Change::default());
    let again = Shard::parse(&rebuilt, generation).unwrap();
    assert_eq!(again.entries().collect::<Vec<_>>(), entries);
});
