//! The key store, kept in Envoy's shared data so that every worker VM of one Envoy sees one
//! copy: memory does not multiply with `--concurrency`, and one worker's refresh serves all.
//!
//! Layout (all under one `vm_id`):
//! - `k:<sha256, base64url>` → a `StoredKey` (binary, `codec.rs`), or empty for a deleted key.
//!   Base64 rather than hex keeps a million map keys 30 bytes shorter each.
//! - `keygate.live` → `StoreMeta` in one binary record: which generation is current and since
//!   when the snapshot is fresh (the first 16 bytes, all a request reads: `StoreView`), then the
//!   snapshot version, epoch and key count, the fencing token of the last refresh lease holder
//!   and the highest generation ever written. It is written only by `update_meta`, by CAS, and
//!   only by a lease holder whose fencing token is not older than the one in the record.
//!
//! Shared data cannot delete entries, so a full snapshot does not clear the old keys: it writes
//! its keys with a new, higher generation and then switches `generation`. A lookup accepts an
//! entry whose generation is at least the current one, so keys rewritten during a multi-page
//! load keep working, and keys missing from the new snapshot stop working the moment the switch
//! lands. Deltas overwrite entries in place (deleted → empty value). A full load that is
//! aborted leaves entries of its generation behind; the high-water generation makes sure the
//! next full load takes a higher one (even after the clock steps back), so they never count
//! as current.
//!
//! Longer than most files because its tests sit beside the code (about 250 lines of code).

pub mod codec;
pub mod key;

use crate::contract::key_hash::{parse_hex_digest, Digest};
use crate::contract::record::ValidPage;
use crate::host::{Host, WriteError};
use crate::store::key::StoredKey;

/// The store record (`StoreMeta`); the request path reads its first 16 bytes.
pub const VIEW_KEY: &str = "keygate.live";
/// Layout of the key entries. Shared data outlives a Wasm VM that is reloaded in a running
/// Envoy (a new `.wasm` with the same `vm_id`), so a filter that finds entries of another
/// layout takes a full snapshot instead of a delta on top of records it cannot read.
pub const STORE_FORMAT: u32 = 1;
const KEY_PREFIX: &str = "k:";
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Bounded retries for CAS writes of small shared records.
pub const CAS_RETRIES: usize = 8;
/// Bytes before the epoch in the encoded `StoreMeta`.
const META_FIXED_LEN: usize = 52;

/// What the store currently serves, and who may change it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreMeta {
    pub generation: u64,
    /// When a refresh last succeeded (200 or 304), proxy clock ms; 0 before the first one.
    pub last_success_ms: u64,
    /// Fencing token of the refresh lease holder that last wrote this record; a holder with an
    /// older token may not write it.
    pub fence: u64,
    /// The highest generation key entries were ever written with.
    pub high_water: u64,
    pub version: u64,
    pub keys: u64,
    /// Layout of the key entries (`STORE_FORMAT`) the last full snapshot was written in; 0 for
    /// a record left by an older filter.
    pub format: u32,
    pub epoch: String,
}

impl StoreMeta {
    pub fn loaded(&self) -> bool {
        self.last_success_ms > 0
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(META_FIXED_LEN + self.epoch.len());
        for value in [
            self.generation,
            self.last_success_ms,
            self.fence,
            self.high_water,
            self.version,
            self.keys,
        ] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        bytes.extend_from_slice(&self.format.to_le_bytes());
        bytes.extend_from_slice(self.epoch.as_bytes());
        bytes
    }

    /// Decodes a record; a 16-byte record (an older filter's view) keeps its generation and
    /// freshness, with format 0 so the next refresh takes a full snapshot.
    fn decode(bytes: &[u8]) -> Option<StoreMeta> {
        let view = StoreView::decode(bytes)?;
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        let mut meta = StoreMeta {
            generation: view.generation,
            last_success_ms: view.last_success_ms,
            ..StoreMeta::default()
        };
        if bytes.len() < META_FIXED_LEN {
            meta.high_water = view.generation;
            return Some(meta);
        }
        meta.fence = u64_at(16)?;
        meta.high_water = u64_at(24)?;
        meta.version = u64_at(32)?;
        meta.keys = u64_at(40)?;
        meta.format = u32::from_le_bytes(bytes.get(48..52)?.try_into().ok()?);
        meta.epoch = String::from_utf8(bytes.get(META_FIXED_LEN..)?.to_vec()).ok()?;
        Some(meta)
    }
}

/// What a request needs to know about the store: the first 16 bytes of the store record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreView {
    pub generation: u64,
    pub last_success_ms: u64,
}

impl StoreView {
    /// Whether a snapshot is loaded and fresh enough to serve at `now_ms`.
    pub fn usable(&self, now_ms: u64, max_staleness: std::time::Duration) -> bool {
        self.last_success_ms > 0
            && now_ms.saturating_sub(self.last_success_ms) <= max_staleness.as_millis() as u64
    }

    fn decode(bytes: &[u8]) -> Option<StoreView> {
        let generation = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let last_success_ms = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(StoreView {
            generation,
            last_success_ms,
        })
    }
}

/// The current view; the default (nothing loaded) when absent or unreadable.
pub fn read_view(host: &dyn Host) -> StoreView {
    host.get_shared(VIEW_KEY)
        .0
        .and_then(|bytes| StoreView::decode(&bytes))
        .unwrap_or_default()
}

/// The shared-data key of a digest: `k:` + unpadded base64url of its 32 bytes.
fn slot_of_digest(digest: &Digest) -> String {
    let mut key = String::with_capacity(KEY_PREFIX.len() + 43);
    key.push_str(KEY_PREFIX);
    for chunk in digest.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            key.push(char::from(BASE64URL[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    key
}

/// The shared-data key of a hash given in lowercase hex. Anything that is not 64 hex digits
/// maps to a key no record is stored under.
fn slot(hash: &str) -> String {
    match parse_hex_digest(hash) {
        Some(digest) => slot_of_digest(&digest),
        None => format!("{KEY_PREFIX}!{hash}"),
    }
}

pub fn read_meta(host: &dyn Host) -> StoreMeta {
    host.get_shared(VIEW_KEY)
        .0
        .and_then(|bytes| StoreMeta::decode(&bytes))
        .unwrap_or_default()
}

/// Why the store record was not updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaError {
    /// A lease holder with a newer fencing token has written the record: ours expired.
    Fenced,
    Write(WriteError),
}

/// Replaces the store record with `update(current)`, by CAS with bounded retries, as the lease
/// holder with fencing token `fence`. Refused if the record carries a newer token; the record
/// keeps `fence` and the highest generation ever seen.
pub fn update_meta(
    host: &dyn Host,
    fence: u64,
    update: impl Fn(&StoreMeta) -> StoreMeta,
) -> Result<StoreMeta, MetaError> {
    let mut last_error = WriteError::CasMismatch;
    for _ in 0..CAS_RETRIES {
        let (bytes, cas) = host.get_shared(VIEW_KEY);
        let current = bytes
            .and_then(|b| StoreMeta::decode(&b))
            .unwrap_or_default();
        if current.fence > fence {
            return Err(MetaError::Fenced);
        }
        let mut next = update(&current);
        next.fence = fence;
        next.high_water = next.high_water.max(current.high_water).max(next.generation);
        match host.set_shared(VIEW_KEY, &next.encode(), cas) {
            Ok(()) => return Ok(next),
            Err(error) => last_error = error,
        }
        if last_error == WriteError::Host {
            break;
        }
    }
    Err(MetaError::Write(last_error))
}

/// The key with this hash (hex), if the store holds a live record for it in `generation` or
/// later.
pub fn lookup(host: &dyn Host, hash: &str, generation: u64) -> Option<StoredKey> {
    read_record(host, &slot(hash), generation)
}

/// `lookup` by digest bytes: the request path, which never needs the hex.
pub fn lookup_digest(host: &dyn Host, digest: &Digest, generation: u64) -> Option<StoredKey> {
    read_record(host, &slot_of_digest(digest), generation)
}

fn read_record(host: &dyn Host, slot: &str, generation: u64) -> Option<StoredKey> {
    let bytes = host.get_shared(slot).0?;
    StoredKey::decode(&bytes).filter(|key| key.generation >= generation)
}

/// Writes a validated page. Only the refresh lease holder writes key entries, so they are
/// plain writes; the lease (see `refresh.rs`) is what serialises writers.
/// Returns how the number of live keys changed when `count_changes` (deltas) is set.
pub fn write_page(
    host: &dyn Host,
    page: &ValidPage,
    current_generation: u64,
    count_changes: bool,
) -> Result<i64, WriteError> {
    let mut change = 0i64;
    for (hash, key) in &page.upserts {
        let slot = slot(hash);
        if count_changes && lookup(host, hash, current_generation).is_none() {
            change += 1;
        }
        host.set_shared(&slot, &key.encode(), None)?;
    }
    for hash in &page.deletions {
        if count_changes && lookup(host, hash, current_generation).is_some() {
            change -= 1;
        }
        host.set_shared(&slot(hash), &[], None)?;
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::key_hash::{digest_key, hash_key};
    use crate::contract::snapshot::Limits;
    use crate::host::FakeHost;
    use crate::store::key::StoredKey;

    fn stored(id: &str, generation: u64) -> StoredKey {
        StoredKey {
            generation,
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

    #[test]
    fn generations_hide_keys_missing_from_a_newer_full_snapshot() {
        let host = FakeHost::at(1);
        let (a, b) = (hash_key("a"), hash_key("b"));
        let first = ValidPage {
            upserts: vec![(a.clone(), stored("a", 1)), (b.clone(), stored("b", 1))],
            deletions: vec![],
            quarantined: vec![],
        };
        write_page(&host, &first, 1, false).unwrap();
        assert!(lookup(&host, &a, 1).is_some());

        // A new full snapshot (generation 2) only has `a`. While it is being written the
        // current generation is still 1, and both keys keep working.
        let second = ValidPage {
            upserts: vec![(a.clone(), stored("a", 2))],
            deletions: vec![],
            quarantined: vec![],
        };
        write_page(&host, &second, 1, false).unwrap();
        assert!(lookup(&host, &a, 1).is_some());
        assert!(lookup(&host, &b, 1).is_some());
        // After the switch only `a` does.
        assert!(lookup(&host, &a, 2).is_some());
        assert!(lookup(&host, &b, 2).is_none());
    }

    #[test]
    fn deltas_delete_in_place_and_count() {
        let host = FakeHost::at(1);
        let (a, b) = (hash_key("a"), hash_key("b"));
        let page = ValidPage {
            upserts: vec![(a.clone(), stored("a", 1))],
            deletions: vec![],
            quarantined: vec![],
        };
        assert_eq!(write_page(&host, &page, 1, true).unwrap(), 1);
        assert_eq!(write_page(&host, &page, 1, true).unwrap(), 0);
        let delta = ValidPage {
            upserts: vec![(b.clone(), stored("b", 1))],
            deletions: vec![a.clone()],
            quarantined: vec![],
        };
        assert_eq!(write_page(&host, &delta, 1, true).unwrap(), 0);
        assert!(lookup(&host, &a, 1).is_none());
        assert!(lookup(&host, &b, 1).is_some());
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
            epoch: "E-1".into(),
            ..m.clone()
        })
        .unwrap();
        assert_eq!(
            read_view(&host),
            StoreView {
                generation: 7,
                last_success_ms: 99
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
    fn an_older_filters_view_reads_as_a_store_to_reload() {
        let host = FakeHost::at(1);
        let mut old_view = 42u64.to_le_bytes().to_vec();
        old_view.extend_from_slice(&1_000u64.to_le_bytes());
        host.set_shared(VIEW_KEY, &old_view, None).unwrap();
        let meta = read_meta(&host);
        assert_eq!((meta.generation, meta.last_success_ms), (42, 1_000));
        assert_eq!((meta.format, meta.high_water), (0, 42));
        assert_eq!(read_view(&host).generation, 42);
    }

    #[test]
    fn slot_keys_are_base64url_of_the_digest() {
        // SHA-256("abc"), base64url without padding.
        assert_eq!(
            slot("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            "k:ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        assert_eq!(slot_of_digest(&digest_key("abc")), slot(&hash_key("abc")));
        assert_eq!(slot("zz"), "k:!zz");
        assert_eq!(slot(&"A".repeat(64)), format!("k:!{}", "A".repeat(64)));
    }

    #[test]
    fn garbage_entries_read_as_absent() {
        let host = FakeHost::at(1);
        host.set_shared(&slot(&hash_key("a")), b"{not json", None)
            .unwrap();
        assert!(lookup(&host, &hash_key("a"), 0).is_none());
        host.set_shared(VIEW_KEY, b"short", None).unwrap();
        assert_eq!(read_meta(&host), StoreMeta::default());
        assert_eq!(read_view(&host), StoreView::default());
    }
}
