//! The key store, kept in Envoy's shared data so that every worker VM of one Envoy sees one
//! copy: memory does not multiply with `--concurrency`, and one worker's refresh serves all.
//!
//! Layout 2 (all under one `vm_id`):
//! - `s<set>:<shard, 4 hex>` → a shard (`shard.rs`): the keys whose SHA-256 starts with the
//!   shard's 16 bits, sorted, each a compact record (`record.rs`). A million keys are ~65,000
//!   map entries of ~1.5 KB instead of a million small ones, which is what Envoy's map costs
//!   per entry (a node, two strings, a bucket: ~170 bytes) made the bulk of the memory.
//! - `keygate.store` → `StoreMeta` in one binary record: which generation is current and since
//!   when the snapshot is fresh (the first 16 bytes, all a request reads: `StoreView`), then the
//!   snapshot version, key counts, the fencing token of the last refresh lease holder and the
//!   highest generation ever written. It is written only by `update_meta`, by CAS, and only by
//!   a lease holder whose fencing token is not older than the one in the record.
//!
//! Two sets of shards, `s0:` and `s1:`; the current generation's parity names the live one. A
//! full snapshot is written into the other set with a new generation of that parity and goes
//! live when `generation` switches, all at once: keys missing from it stop working at that
//! instant, and removed or rotated keys leave nothing behind (the old set's shards are
//! rewritten by the next full load; a shard whose generation is not the current one reads as
//! empty, so nothing needs deleting, which shared data cannot do). A delta rewrites only the
//! shards it touches, in the live set, in place. A full load that is aborted leaves shards of its
//! generation behind; the high-water generation makes sure the next full load takes a higher
//! one (even after the clock steps back), so they never count as current.
//!
//! Layout 1 (`k:<sha256, base64url>` → one `StoredKey` per entry, under `keygate.live`) is what
//! an older filter left in a running Envoy whose `.wasm` was replaced: requests are served from
//! it until this layout's first full load is published, so an upgrade has no window of 401s.

pub mod codec;
pub mod key;
pub mod recent;
pub mod record;
pub mod shard;

use std::cell::RefCell;
use std::rc::Rc;

use crate::host::{Host, WriteError};
use crate::store::recent::RecentKeys;
use crate::store::record::KeyView;
use crate::store::shard::{Change, Edit, Shard};
use keygate_contract::key_hash::{parse_hex_digest, Digest};
use keygate_contract::record::ValidPage;

/// The store record (`StoreMeta`) of layout 2; the request path reads its first 16 bytes.
pub const VIEW_KEY: &str = "keygate.store";
/// The store record an older filter (layout 1) kept.
pub const LEGACY_VIEW_KEY: &str = "keygate.live";
/// Layout of the key entries. Shared data outlives a Wasm VM that is reloaded in a running
/// Envoy (a new `.wasm` with the same `vm_id`), so a filter that finds entries of another
/// layout takes a full snapshot instead of a delta on top of records it cannot read.
pub const STORE_FORMAT: u32 = 2;
const KEY_PREFIX: &str = "k:";
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Bounded retries for CAS writes of small shared records.
pub const CAS_RETRIES: usize = 8;
/// Bytes before the epoch in the encoded `StoreMeta`.
const META_FIXED_LEN: usize = 60;

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
    /// Live keys with any rate or concurrency limit: what the rate-limit counters are sized by.
    pub limited_keys: u64,
    /// Layout of the key entries (`STORE_FORMAT`) the last full snapshot was written in.
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
            self.limited_keys,
        ] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        bytes.extend_from_slice(&self.format.to_le_bytes());
        bytes.extend_from_slice(self.epoch.as_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<StoreMeta> {
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        Some(StoreMeta {
            generation: u64_at(0)?,
            last_success_ms: u64_at(8)?,
            fence: u64_at(16)?,
            high_water: u64_at(24)?,
            version: u64_at(32)?,
            keys: u64_at(40)?,
            limited_keys: u64_at(48)?,
            format: u32::from_le_bytes(bytes.get(56..60)?.try_into().ok()?),
            epoch: String::from_utf8(bytes.get(META_FIXED_LEN..)?.to_vec()).ok()?,
        })
    }
}

/// What a request needs to know about the store: the first 16 bytes of the store record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreView {
    pub generation: u64,
    pub last_success_ms: u64,
    /// Served from a store an older filter left (layout 1), until ours is loaded.
    pub legacy: bool,
}

impl StoreView {
    /// Whether a snapshot is loaded and fresh enough to serve at `now_ms`.
    pub fn usable(&self, now_ms: u64, max_staleness: std::time::Duration) -> bool {
        self.last_success_ms > 0
            && now_ms.saturating_sub(self.last_success_ms) <= max_staleness.as_millis() as u64
    }

    fn decode(bytes: &[u8], legacy: bool) -> Option<StoreView> {
        let generation = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let last_success_ms = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(StoreView {
            generation,
            last_success_ms,
            legacy,
        })
    }
}

/// The current view; the default (nothing loaded) when absent or unreadable. Until this
/// layout's first snapshot is published, the view of a layout-1 store left by an older filter.
pub fn read_view(host: &dyn Host) -> StoreView {
    let current = host
        .get_shared(VIEW_KEY)
        .0
        .and_then(|bytes| StoreView::decode(&bytes, false))
        .unwrap_or_default();
    if current.last_success_ms > 0 {
        return current;
    }
    host.get_shared(LEGACY_VIEW_KEY)
        .0
        .and_then(|bytes| StoreView::decode(&bytes, true))
        .filter(|legacy| legacy.last_success_ms > 0)
        .unwrap_or(current)
}

/// The shared-data key of shard `index` in the set of `generation`: `s0:00ff`.
struct ShardKey([u8; 7]);

impl ShardKey {
    fn new(generation: u64, index: u16) -> ShardKey {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut key = *b"s0:0000";
        key[1] = b'0' + (generation & 1) as u8;
        for (i, byte) in index.to_be_bytes().iter().enumerate() {
            key[3 + 2 * i] = HEX[usize::from(byte >> 4)];
            key[4 + 2 * i] = HEX[usize::from(byte & 15)];
        }
        ShardKey(key)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The layout-1 shared-data key of a digest: `k:` + unpadded base64url of its 32 bytes.
fn legacy_slot(digest: &Digest) -> String {
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

/// A key found in the store: its record's bytes, from which the request path borrows a
/// `KeyView`. Shared with this worker's recent keys (`recent.rs`), so a cached key costs no copy.
#[derive(Debug)]
pub struct Found {
    record: Rc<[u8]>,
}

impl Found {
    pub fn view(&self) -> Option<KeyView<'_>> {
        KeyView::decode(&self.record)
    }
}

/// The key with this digest in the store `view` describes: one shared-data read and a binary
/// search in the shard, or (layout 1, until ours is loaded) the entry an older filter wrote.
pub fn lookup_digest(host: &dyn Host, digest: &Digest, view: &StoreView) -> Option<Found> {
    if view.legacy {
        let bytes = host.get_shared(&legacy_slot(digest)).0?;
        let key = codec::decode(&bytes).filter(|key| key.generation >= view.generation)?;
        return Some(Found {
            record: Rc::from(record::encode(&key)),
        });
    }
    let bytes = host
        .get_shared(ShardKey::new(view.generation, shard::shard_of(digest)).as_str())
        .0?;
    let record = Shard::parse(&bytes, view.generation)?.find(digest)?;
    Some(Found {
        record: Rc::from(record),
    })
}

/// `lookup_digest`, served from this worker's `recent` keys when the key was found less than
/// `ttl_ms` ago in the same generation (see `recent.rs` for what that gives up). Layout 1 is
/// read every time: it only serves until the first full load of an upgrade.
pub fn lookup_recent(
    host: &dyn Host,
    digest: &Digest,
    view: &StoreView,
    recent: &RefCell<RecentKeys>,
    now_ms: u64,
    ttl_ms: u64,
) -> Option<Found> {
    if view.legacy {
        return lookup_digest(host, digest, view);
    }
    if let Some(record) = recent.borrow().get(digest, view.generation, now_ms, ttl_ms) {
        return Some(Found { record });
    }
    let found = lookup_digest(host, digest, view)?;
    recent
        .borrow_mut()
        .put(digest, view.generation, now_ms, Rc::clone(&found.record));
    Some(found)
}

/// `lookup_digest` by a hash in lowercase hex, in the layout-2 store of `generation`.
pub fn lookup(host: &dyn Host, hash: &str, generation: u64) -> Option<Found> {
    let view = StoreView {
        generation,
        last_success_ms: 1,
        legacy: false,
    };
    lookup_digest(host, &parse_hex_digest(hash)?, &view)
}

/// Writes a validated page into the shards of `generation` (the live generation for a delta,
/// the one being built for a full load): each shard the page touches is read, merged and
/// written once. Only the refresh lease holder writes shards, so they are plain writes; the
/// lease (see `refresh.rs`) is what serialises writers. Returns how the key counts changed.
pub fn write_page(
    host: &dyn Host,
    page: &ValidPage,
    generation: u64,
) -> Result<Change, WriteError> {
    let records: Vec<Vec<u8>> = page
        .upserts
        .iter()
        .map(|(_, key)| record::encode(key))
        .collect();
    let upserts = page
        .upserts
        .iter()
        .zip(&records)
        .map(|((digest, _), record)| (*digest, Some(record.as_slice())));
    let deletions = page.deletions.iter().map(|digest| (*digest, None));
    let mut edits: Vec<Edit<'_>> = upserts.chain(deletions).collect();
    // Digest order is shard order: each shard's edits become one run. A page never lists a
    // hash twice (validation), so the order of equal digests is moot. A full snapshot comes in
    // hash order already, which makes this sort a single pass.
    edits.sort_unstable_by_key(|edit| edit.0);
    let mut change = Change::default();
    for run in edits.chunk_by(|a, b| shard::shard_of(&a.0) == shard::shard_of(&b.0)) {
        let Some((first, _)) = run.first() else {
            continue;
        };
        let key = ShardKey::new(generation, shard::shard_of(first));
        let current = host.get_shared(key.as_str()).0;
        let shard = current
            .as_deref()
            .and_then(|bytes| Shard::parse(bytes, generation));
        let (bytes, shard_change) = shard::merge(shard.as_ref(), generation, run);
        host.set_shared(key.as_str(), &bytes, None)?;
        change += shard_change;
    }
    Ok(change)
}

/// Empties, in the set of parity `set`, the shards `range` of a generation older than
/// `current`: what a replaced full snapshot left behind, so a full reload does not keep two
/// copies of every key. Each write is a CAS against the shard as read, so a shard a newer full
/// load has just written into that set is never erased. Returns how many were emptied.
pub fn sweep_replaced(
    host: &dyn Host,
    set: u64,
    current: u64,
    range: std::ops::Range<u32>,
) -> usize {
    let mut emptied = 0;
    for index in range.take(shard::SHARD_COUNT as usize) {
        let key = ShardKey::new(set, index as u16);
        let (Some(bytes), cas) = host.get_shared(key.as_str()) else {
            continue;
        };
        if shard::generation_of(&bytes).is_some_and(|generation| generation < current)
            && host.set_shared(key.as_str(), &[], cas).is_ok()
        {
            emptied += 1;
        }
    }
    emptied
}

#[cfg(test)]
mod tests;
