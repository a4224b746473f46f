//! The full snapshot in the compact encoding, built once and served to every starting proxy as
//! slices of the same bytes, instead of being read and encoded again for each one.
//!
//! A full snapshot lists live keys in ascending hash order (docs/snapshot.md), so its pages
//! are addressed by the last hash served and a page can be cut from this cache or, on a replica
//! without one, read from the database (`keys::live_by_hash`).
//!
//! Why a cached snapshot at an older version is safe to serve: the filter records the version
//! of the first page it loads and then asks for a delta since that version, and the feed keeps
//! that delta available for as long as the epoch lasts (deleted keys stay as tombstones, rows
//! are never removed, and a database has one epoch for life; `feed.rs`). So a page may show a
//! key as it was at the snapshot's version or at any later one: the delta brings both to now.
//! What must never happen is a later page older than the first one (a change between the two
//! would be in neither the page nor the delta), so a cursor carries the first page's version and
//! only a cache at or above it, or the database, serves the next page.

use crate::domain::clock;
use crate::domain::served::compact_record;
use crate::feed::error::{blocking, FeedError};
use crate::feed::versions::DEFAULT_PAGE_SIZE;
use crate::store::db::current_version;
use crate::store::keys;
use crate::store::sql::Error as StoreError;
use crate::store::Store;
use keygate_contract::key_hash::Digest;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

/// How old a cached snapshot may be and still start a load, without a rebuild, while the version
/// has moved on: a service under constant writes rebuilds at most this often, and a proxy
/// starting while no rebuild runs catches up with a delta of at most this long's changes.
pub const MAX_AGE: Duration = Duration::from_secs(10);
/// Keys read per database transaction while building, so no transaction stays open for the
/// whole key set.
const BUILD_CHUNK: usize = 20_000;
/// Bytes of a record's frame (its u32 length), before the hash that opens its body.
const FRAME_BYTES: usize = 4;

/// Every live key at `version` (or later, see the module comment), encoded.
#[derive(Debug)]
pub struct FullSnapshot {
    pub epoch: String,
    pub version: u64,
    built: Instant,
    /// Framed records, concatenated in ascending hash order.
    records: Vec<u8>,
    /// Where each record starts in `records`.
    starts: Vec<usize>,
}

/// A run of consecutive records of a `FullSnapshot`.
pub struct CachedPage<'a> {
    /// The framed records, ready to be copied into a page.
    pub records: &'a [u8],
    pub count: usize,
    /// The last record's hash when more records follow.
    pub next_after: Option<Digest>,
}

impl FullSnapshot {
    /// Reads and encodes every live key, in hash order.
    pub fn build(store: &Store) -> Result<FullSnapshot, StoreError> {
        let now = clock::now();
        // Read first: every row read afterwards is at this version or later.
        let version = store.read(current_version)?;
        let mut records = Vec::new();
        let mut starts = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let rows = store.read(|tx| keys::live_by_hash(tx, after.as_deref(), BUILD_CHUNK))?;
            let complete = rows.len() < BUILD_CHUNK;
            after = rows.last().map(|row| row.hash.clone());
            for row in rows {
                if let Some(framed) = compact_record(row, now) {
                    starts.push(records.len());
                    records.extend_from_slice(&framed);
                }
            }
            if complete || after.is_none() {
                break;
            }
        }
        Ok(FullSnapshot {
            epoch: store.epoch().to_string(),
            version,
            built: Instant::now(),
            records,
            starts,
        })
    }

    pub fn key_count(&self) -> usize {
        self.starts.len()
    }

    /// Bytes this snapshot holds in memory: the encoded records and their index.
    pub fn bytes(&self) -> usize {
        self.records.len() + self.starts.len() * std::mem::size_of::<usize>()
    }

    fn hash_at(&self, index: usize) -> Option<&[u8]> {
        let start = self.starts.get(index)? + FRAME_BYTES;
        self.records.get(start..start + 32)
    }

    /// The index of the first record whose hash sorts after `after`.
    fn first_after(&self, after: &Digest) -> usize {
        let (mut low, mut high) = (0, self.starts.len());
        while low < high {
            let middle = low + (high - low) / 2;
            if self
                .hash_at(middle)
                .is_some_and(|hash| hash <= after.as_slice())
            {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// Up to `limit` records after the hash `after` (from the first when `None`).
    pub fn page(&self, after: Option<&Digest>, limit: usize) -> CachedPage<'_> {
        let first = after.map_or(0, |after| self.first_after(after));
        let end = first.saturating_add(limit).min(self.starts.len());
        let start_byte = self
            .starts
            .get(first)
            .copied()
            .unwrap_or(self.records.len());
        let end_byte = self.starts.get(end).copied().unwrap_or(self.records.len());
        let next_after = (end < self.starts.len())
            .then(|| end.checked_sub(1).and_then(|last| self.hash_at(last)))
            .flatten()
            .and_then(|hash| Digest::try_from(hash).ok());
        CachedPage {
            records: self.records.get(start_byte..end_byte).unwrap_or_default(),
            count: end.saturating_sub(first),
            next_after,
        }
    }
}

/// The cached full snapshot of this replica, and the lock that makes one build at a time.
#[derive(Debug, Default)]
pub struct SnapshotCache {
    current: Mutex<Option<Arc<FullSnapshot>>>,
    building: Arc<tokio::sync::Mutex<()>>,
}

impl SnapshotCache {
    fn current(&self) -> MutexGuard<'_, Option<Arc<FullSnapshot>>> {
        // Nothing can be left half-written under this lock (it only swaps an Arc).
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached snapshot if it may start a load now: same epoch, and at `version` or younger
    /// than `MAX_AGE`.
    fn fresh(&self, epoch: &str, version: u64) -> Option<Arc<FullSnapshot>> {
        self.current()
            .as_ref()
            .filter(|cached| {
                cached.epoch == epoch
                    && (cached.version >= version || cached.built.elapsed() < MAX_AGE)
            })
            .cloned()
    }

    /// Bytes of the cached snapshot (0 while none is cached). A rebuild holds the old one and
    /// the new one for a moment; this counts the one being served.
    pub fn bytes(&self) -> usize {
        self.current().as_ref().map_or(0, |cached| cached.bytes())
    }

    /// The cached snapshot if it may serve a later page of a load that started at `version`.
    pub fn at_least(&self, epoch: &str, version: u64) -> Option<Arc<FullSnapshot>> {
        self.current()
            .as_ref()
            .filter(|cached| cached.epoch == epoch && cached.version >= version)
            .cloned()
    }

    /// The snapshot to start a full load from: the cached one while fresh. A stale one of this
    /// epoch is still served at once (the delta covers it) while a rebuild runs behind it, so
    /// no proxy waits for a build except when there is nothing cached at all.
    pub async fn for_first_page(
        self: &Arc<Self>,
        store: &Arc<Store>,
    ) -> Result<Arc<FullSnapshot>, FeedError> {
        let epoch = store.epoch();
        if let Some(cached) = self.fresh(epoch, *store.subscribe().borrow()) {
            return Ok(cached);
        }
        if let Some(stale) = self.at_least(epoch, 0) {
            if let Ok(building) = Arc::clone(&self.building).try_lock_owned() {
                let cache = Arc::clone(self);
                let store = Arc::clone(store);
                tokio::spawn(async move {
                    if let Err(error) = cache.build(&store, building).await {
                        eprintln!("keygate-control: rebuilding the full snapshot: {error}");
                    }
                });
            }
            return Ok(stale);
        }
        let building = Arc::clone(&self.building).lock_owned().await;
        // Built by another request while this one waited for the lock.
        if let Some(cached) = self.at_least(epoch, 0) {
            return Ok(cached);
        }
        self.build(store, building).await
    }

    /// Builds the snapshot at start when the key set is larger than one page, so the first
    /// proxies to start do not wait for it (a million keys take seconds to read).
    pub fn warm_up(self: &Arc<Self>, store: &Arc<Store>) {
        let cache = Arc::clone(self);
        let store = Arc::clone(store);
        tokio::spawn(async move {
            let large = blocking(&store, |store| {
                store.read(|tx| keys::live_count_exceeds(tx, DEFAULT_PAGE_SIZE))
            })
            .await;
            if !matches!(large, Ok(true)) {
                return;
            }
            let building = Arc::clone(&cache.building).lock_owned().await;
            if let Err(error) = cache.build(&store, building).await {
                eprintln!("keygate-control: building the full snapshot: {error}");
            }
        });
    }

    /// Builds and caches the snapshot while `building` is held. The build runs in a task of its
    /// own, so a proxy whose call timed out during a long build finds it cached when it retries.
    async fn build(
        self: &Arc<Self>,
        store: &Arc<Store>,
        building: OwnedMutexGuard<()>,
    ) -> Result<Arc<FullSnapshot>, FeedError> {
        let cache = Arc::clone(self);
        let store = Arc::clone(store);
        tokio::spawn(async move {
            let built = Arc::new(blocking(&store, FullSnapshot::build).await?);
            *cache.current() = Some(Arc::clone(&built));
            drop(building);
            Ok(built)
        })
        .await
        .map_err(|error| FeedError::Task(format!("snapshot build failed: {error}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(first_byte: u8, filler: usize) -> Vec<u8> {
        let mut body = vec![first_byte; 32];
        body.extend(std::iter::repeat_n(7, filler));
        let mut framed = (body.len() as u32).to_le_bytes().to_vec();
        framed.extend(body);
        framed
    }

    fn snapshot(first_bytes: &[u8]) -> FullSnapshot {
        let mut records = Vec::new();
        let mut starts = Vec::new();
        for (index, byte) in first_bytes.iter().enumerate() {
            starts.push(records.len());
            records.extend(framed(*byte, index));
        }
        FullSnapshot {
            epoch: "e".into(),
            version: 3,
            built: Instant::now(),
            records,
            starts,
        }
    }

    #[test]
    fn pages_are_consecutive_slices_after_a_hash() {
        let cached = snapshot(&[1, 3, 5, 7]);
        let first = cached.page(None, 2);
        assert_eq!(first.count, 2);
        assert_eq!(first.records, [framed(1, 0), framed(3, 1)].concat());
        assert_eq!(first.next_after, Some([3; 32]));
        let second = cached.page(first.next_after.as_ref(), 2);
        assert_eq!(second.records, [framed(5, 2), framed(7, 3)].concat());
        assert_eq!(second.next_after, None);
        // A hash between two records, or one removed since: the next one up.
        assert_eq!(cached.page(Some(&[4; 32]), 10).count, 2);
        assert_eq!(cached.page(Some(&[0; 32]), 10).count, 4);
        let past_the_end = cached.page(Some(&[9; 32]), 10);
        assert_eq!((past_the_end.count, past_the_end.next_after), (0, None));
        assert!(past_the_end.records.is_empty());
        let nothing = snapshot(&[]);
        let empty = nothing.page(None, 10);
        assert_eq!((empty.count, empty.next_after), (0, None));
    }

    #[test]
    fn a_build_lists_every_live_key_once_in_hash_order_across_chunks() {
        let (store, dir) = crate::store::db::temp_store("full_snapshot", "build");
        let count = BUILD_CHUNK + 5;
        crate::app::seed::seed(
            &store,
            count as u64,
            crate::domain::plans::Environment::Live,
            None,
        )
        .unwrap();
        assert!(store
            .read(|tx| keys::live_count_exceeds(tx, count - 1))
            .unwrap());
        assert!(!store
            .read(|tx| keys::live_count_exceeds(tx, count))
            .unwrap());
        let built = FullSnapshot::build(&store).unwrap();
        assert_eq!(built.key_count(), count);
        assert_eq!(built.version, store.read(current_version).unwrap());
        let hashes: Vec<&[u8]> = (0..count).filter_map(|i| built.hash_at(i)).collect();
        assert_eq!(hashes.len(), count);
        assert!(hashes.windows(2).all(|pair| pair[0] < pair[1]));
        // Pages of the cached snapshot decode as compact records, back to back.
        let page = built.page(None, 3);
        let bytes = keygate_contract::compact::encode_page(
            &Default::default(),
            page.count as u32,
            page.records,
            &[],
        )
        .unwrap();
        let decoded = keygate_contract::compact::decode_page(&bytes).unwrap();
        for (index, body) in decoded.records.iter().enumerate() {
            let record = keygate_contract::compact::decode_record(body).unwrap();
            assert_eq!(record.hash.as_slice(), built.hash_at(index).unwrap());
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn freshness_follows_epoch_version_and_age() {
        let cache = SnapshotCache::default();
        assert!(cache.fresh("e", 3).is_none());
        assert_eq!(cache.bytes(), 0);
        *cache.current() = Some(Arc::new(snapshot(&[1])));
        assert_eq!(cache.bytes(), 4 + 32 + std::mem::size_of::<usize>());
        assert!(cache.fresh("e", 3).is_some());
        assert!(cache.fresh("e", 9).is_some(), "younger than MAX_AGE");
        assert!(cache.fresh("other", 3).is_none());
        assert!(cache.at_least("e", 3).is_some());
        assert!(cache.at_least("e", 4).is_none());
        let mut old = snapshot(&[1]);
        old.built = Instant::now()
            .checked_sub(MAX_AGE + Duration::from_secs(1))
            .unwrap();
        *cache.current() = Some(Arc::new(old));
        assert!(cache.fresh("e", 3).is_some(), "at the current version");
        assert!(cache.fresh("e", 4).is_none());
    }
}
