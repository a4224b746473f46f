//! The records of keys this worker found in the store in the last few milliseconds, so that a
//! key sending request after request costs one shard read per `ttl_ms`, not one per request.
//!
//! Why: the shard read is a shared-data call (Envoy's process-wide lock, a copy of the shard,
//! and a call back into the VM to allocate it) and measured 1.3 µs of the ~5 µs Keygate adds to
//! an allowed request (docs/benchmarks.md, round 3). What it gives up: a change to a key this
//! worker has cached (a revocation, new scopes, a new plan) reaches this worker up to `ttl_ms`
//! later (`RECENT_KEY_TTL_MS`, 10 ms, in `request.rs`): small next to the 5–20 ms a change takes
//! to reach the proxy by long polling, while a key busy enough for the read to matter still
//! hits. Keys that are not found are never cached, so a new key works as soon as its delta is
//! written. A 100 ms bound (the store view's) measured the same, but made revocations visibly
//! later and tests that step a key through states flaky.
//!
//! The cache is direct-mapped by digest bits: a fixed number of entries whatever the traffic,
//! no eviction bookkeeping, and a record's bytes are copied in only on a miss (its buffer is
//! reused by the next key in that entry).

use std::rc::Rc;

use keygate_contract::key_hash::Digest;

/// Entries per worker: enough for the keys busy at one moment on one Envoy worker; at ~100 bytes
/// of record each, well under 200 KB per worker.
pub const ENTRIES: usize = 1024;

#[derive(Debug)]
struct Entry {
    digest: Digest,
    generation: u64,
    read_at_ms: u64,
    record: Rc<[u8]>,
}

/// See the module comment.
#[derive(Debug, Default)]
pub struct RecentKeys {
    /// `ENTRIES` long once the first record is kept (an idle worker holds nothing).
    entries: Vec<Option<Entry>>,
}

fn index(digest: &Digest) -> usize {
    // Bytes 0..2 choose the shard; any other bits spread keys as evenly.
    usize::from(u16::from_le_bytes([digest[4], digest[5]])) % ENTRIES
}

impl RecentKeys {
    /// The record of `digest` read from store generation `generation` less than `ttl_ms` before
    /// `now_ms` (never one read "in the future": a clock that went back misses).
    pub fn get(
        &self,
        digest: &Digest,
        generation: u64,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Option<Rc<[u8]>> {
        let entry = self.entries.get(index(digest))?.as_ref()?;
        let fresh = now_ms >= entry.read_at_ms && now_ms - entry.read_at_ms < ttl_ms;
        (fresh && entry.generation == generation && entry.digest == *digest)
            .then(|| Rc::clone(&entry.record))
    }

    /// Keeps `record`, just read for `digest` from `generation` at `now_ms`, in place of
    /// whatever shared its entry.
    pub fn put(&mut self, digest: &Digest, generation: u64, now_ms: u64, record: Rc<[u8]>) {
        if self.entries.is_empty() {
            self.entries.resize_with(ENTRIES, || None);
        }
        if let Some(slot) = self.entries.get_mut(index(digest)) {
            *slot = Some(Entry {
                digest: *digest,
                generation,
                read_at_ms: now_ms,
                record,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(first: u8, spread: u8) -> Digest {
        let mut digest = [first; 32];
        digest[4] = spread;
        digest
    }

    #[test]
    fn a_record_is_served_for_ttl_then_read_again() {
        let mut recent = RecentKeys::default();
        let key = digest(1, 7);
        assert!(recent.get(&key, 2, 1_000, 100).is_none());
        recent.put(&key, 2, 1_000, Rc::from(&b"record"[..]));
        assert_eq!(
            recent.get(&key, 2, 1_000, 100).as_deref(),
            Some(&b"record"[..])
        );
        assert_eq!(
            recent.get(&key, 2, 1_099, 100).as_deref(),
            Some(&b"record"[..])
        );
        assert!(
            recent.get(&key, 2, 1_100, 100).is_none(),
            "expired at the TTL"
        );
        assert!(
            recent.get(&key, 2, 999, 100).is_none(),
            "the clock went back"
        );
    }

    #[test]
    fn another_generation_or_digest_misses() {
        let mut recent = RecentKeys::default();
        let key = digest(1, 7);
        recent.put(&key, 2, 1_000, Rc::from(&b"record"[..]));
        assert!(
            recent.get(&key, 4, 1_010, 100).is_none(),
            "a full snapshot switched"
        );
        let same_entry = digest(9, 7);
        assert_eq!(index(&same_entry), index(&key));
        assert!(recent.get(&same_entry, 2, 1_010, 100).is_none());
        recent.put(&same_entry, 2, 1_020, Rc::from(&b"other"[..]));
        assert!(
            recent.get(&key, 2, 1_030, 100).is_none(),
            "replaced by the key sharing its entry"
        );
        assert_eq!(
            recent.get(&same_entry, 2, 1_030, 100).as_deref(),
            Some(&b"other"[..])
        );
    }

    #[test]
    fn memory_is_bounded_by_the_entry_count() {
        let mut recent = RecentKeys::default();
        for n in 0..10_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&n.to_le_bytes());
            key[4..8].copy_from_slice(&n.to_le_bytes());
            recent.put(&key, 2, 1_000, Rc::from(&b"r"[..]));
        }
        assert_eq!(recent.entries.len(), ENTRIES);
    }
}
