//! The key store, kept in Envoy's shared data so that every worker VM of one Envoy sees one
//! copy: memory does not multiply with `--concurrency`, and one worker's refresh serves all.
//!
//! Layout (all under one `vm_id`):
//! - `k:<sha256, base64url>` → a `StoredKey` (binary, `codec.rs`), or empty for a deleted key.
//!   Base64 rather than hex keeps a million map keys 30 bytes shorter each.
//! - `keygate.meta` → `StoreMeta`: which generation is current, the snapshot version, counts.
//! - `keygate.live` → `StoreView` in 16 bytes: the part of the meta every request reads, kept
//!   apart so the request path does one small read and no parsing.
//!
//! Shared data cannot delete entries, so a full snapshot does not clear the old keys: it writes
//! its keys with a new, higher generation and then switches `meta.generation`. A lookup accepts
//! an entry whose generation is at least the current one, so keys rewritten during a
//! multi-page load keep working, and keys missing from the new snapshot stop working the
//! moment the switch lands. Deltas overwrite entries in place (deleted → empty value).

use serde::{Deserialize, Serialize};

use crate::host::{Host, WriteError};
use crate::keys::{parse_hex_digest, Digest, StoredKey, ValidPage};

pub const META_KEY: &str = "keygate.meta";
/// Layout of the key entries. Shared data outlives a Wasm VM that is reloaded in a running
/// Envoy (a new `.wasm` with the same `vm_id`), so a filter that finds entries of another
/// layout takes a full snapshot instead of a delta on top of records it cannot read.
pub const STORE_FORMAT: u32 = 1;
pub const VIEW_KEY: &str = "keygate.live";
const KEY_PREFIX: &str = "k:";
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Bounded retries for CAS writes of small shared records.
pub const CAS_RETRIES: usize = 8;

/// What the store currently serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeta {
    pub generation: u64,
    pub version: u64,
    pub epoch: String,
    pub keys: u64,
    /// When a refresh last succeeded (200 or 304), proxy clock ms; 0 before the first one.
    pub last_success_ms: u64,
    /// Layout of the key entries (`STORE_FORMAT`) the last full snapshot was written in.
    #[serde(default)]
    pub format: u32,
}

impl StoreMeta {
    pub fn loaded(&self) -> bool {
        self.last_success_ms > 0
    }
}

/// What a request needs to know about the store.
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

    fn encode(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.generation.to_le_bytes());
        bytes[8..].copy_from_slice(&self.last_success_ms.to_le_bytes());
        bytes
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
    match host.get_shared(META_KEY).0 {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        None => StoreMeta::default(),
    }
}

/// Replaces the meta record with `update(current)`, retrying on CAS conflicts.
pub fn update_meta(
    host: &dyn Host,
    update: impl Fn(&StoreMeta) -> StoreMeta,
) -> Result<StoreMeta, WriteError> {
    let mut last_error = WriteError::CasMismatch;
    for _ in 0..CAS_RETRIES {
        let (bytes, cas) = host.get_shared(META_KEY);
        let current = bytes
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let next = update(&current);
        let encoded = serde_json::to_vec(&next).unwrap_or_default();
        match host.set_shared(META_KEY, &encoded, cas) {
            Ok(()) => {
                let view = StoreView {
                    generation: next.generation,
                    last_success_ms: next.last_success_ms,
                };
                // Only the refresh lease holder updates the meta, so the view follows it with a
                // plain write; the switch to a new generation takes effect here.
                host.set_shared(VIEW_KEY, &view.encode(), None)?;
                return Ok(next);
            }
            Err(error) => last_error = error,
        }
        if last_error == WriteError::Host {
            break;
        }
    }
    Err(last_error)
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
    use crate::host::FakeHost;
    use crate::keys::{digest_key, hash_key, StoredKey};
    use crate::snapshot::Limits;

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
        };
        write_page(&host, &first, 1, false).unwrap();
        assert!(lookup(&host, &a, 1).is_some());

        // A new full snapshot (generation 2) only has `a`. While it is being written the
        // current generation is still 1, and both keys keep working.
        let second = ValidPage {
            upserts: vec![(a.clone(), stored("a", 2))],
            deletions: vec![],
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
        };
        assert_eq!(write_page(&host, &page, 1, true).unwrap(), 1);
        assert_eq!(write_page(&host, &page, 1, true).unwrap(), 0);
        let delta = ValidPage {
            upserts: vec![(b.clone(), stored("b", 1))],
            deletions: vec![a.clone()],
        };
        assert_eq!(write_page(&host, &delta, 1, true).unwrap(), 0);
        assert!(lookup(&host, &a, 1).is_none());
        assert!(lookup(&host, &b, 1).is_some());
    }

    #[test]
    fn meta_updates_retry_on_cas_conflicts() {
        let host = FakeHost::at(1);
        host.fail_next_cas.set(3);
        let meta = update_meta(&host, |m| StoreMeta {
            version: m.version + 1,
            ..m.clone()
        })
        .unwrap();
        assert_eq!(meta.version, 1);
        assert_eq!(read_meta(&host).version, 1);
        let meta = update_meta(&host, |m| StoreMeta {
            generation: 7,
            last_success_ms: 99,
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
        host.fail_next_cas.set(CAS_RETRIES as u32);
        assert_eq!(
            update_meta(&host, |m| m.clone()),
            Err(WriteError::CasMismatch)
        );
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
        host.set_shared(META_KEY, b"garbage", None).unwrap();
        assert_eq!(read_meta(&host), StoreMeta::default());
        host.set_shared(VIEW_KEY, b"short", None).unwrap();
        assert_eq!(read_view(&host), StoreView::default());
    }
}
