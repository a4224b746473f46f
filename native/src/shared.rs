//! The native build's shared data: the key store, the rate-limit counters and the leases in
//! this process's memory, with the semantics of Envoy's shared data that the Wasm build relies
//! on (a value and a CAS number per key; a write with a CAS number succeeds only if the entry
//! has not changed since, or does not exist), so `store/`, `limits/` and `sync/` run unchanged.
//!
//! Sixteen maps, each behind its own lock, chosen by the key's hash: the request path reads two
//! or three entries per request from every Envoy worker thread, and one lock would make them
//! queue behind each other and behind the background thread's writes.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use keygate::host::WriteError;
use keygate::sync::queue::Queue;

const SHARDS: usize = 16;

struct Entry {
    value: Vec<u8>,
    cas: u32,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<String, Entry>,
    /// The last CAS number this shard handed out (numbers are per shard: a CAS number is only
    /// ever compared with the same key's).
    last_cas: u32,
}

pub struct SharedData {
    shards: Vec<RwLock<Shard>>,
    hasher: BuildHasherDefault<DefaultHasher>,
}

impl Default for SharedData {
    fn default() -> SharedData {
        SharedData {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: BuildHasherDefault::default(),
        }
    }
}

impl SharedData {
    fn shard(&self, key: &str) -> &RwLock<Shard> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[index]
    }

    // A panicking holder leaves a map that is still whole (entries are replaced, not edited in
    // place), so a poisoned lock is used as it is rather than turned into a second panic.
    fn read(&self, key: &str) -> RwLockReadGuard<'_, Shard> {
        self.shard(key)
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self, key: &str) -> RwLockWriteGuard<'_, Shard> {
        self.shard(key)
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value (`None` when absent or empty) and the CAS number (`None` when absent).
    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        let shard = self.read(key);
        match shard.entries.get(key) {
            Some(entry) => (
                Some(entry.value.clone()).filter(|value| !value.is_empty()),
                Some(entry.cas),
            ),
            None => (None, None),
        }
    }

    /// Writes `key`; with `cas`, only if the entry is absent or still has that CAS number.
    pub fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        let mut shard = self.write(key);
        if let (Some(expected), Some(entry)) = (cas, shard.entries.get(key)) {
            if entry.cas != expected {
                return Err(WriteError::CasMismatch);
            }
        }
        let next = shard.last_cas.wrapping_add(1).max(1);
        shard.last_cas = next;
        match shard.entries.get_mut(key) {
            Some(entry) => {
                entry.value.clear();
                entry.value.extend_from_slice(value);
                entry.cas = next;
            }
            None => {
                shard.entries.insert(
                    key.to_string(),
                    Entry {
                        value: value.to_vec(),
                        cas: next,
                    },
                );
            }
        }
        Ok(())
    }
}

/// Envoy's shared queue, in process memory: where the configurations of one store hand their
/// workers' usage (or touched rate-limit slots), and which the one holding the job's lease
/// drains, whichever configuration that is.
#[derive(Default)]
pub struct SharedQueue(Mutex<VecDeque<Vec<u8>>>);

impl Queue for SharedQueue {
    fn enqueue(&self, item: &[u8]) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push_back(item.to_vec());
        true
    }

    fn dequeue(&self) -> Option<Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front()
    }
}

/// What the configurations of one store share, as Wasm filters of one `vm_id` share Envoy's
/// shared data and queues: the entries, and the usage and fleet queues.
#[derive(Default)]
pub struct Store {
    pub data: SharedData,
    pub usage: Arc<SharedQueue>,
    pub fleet: Arc<SharedQueue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_written_and_absent_as_none() {
        let data = SharedData::default();
        assert_eq!(data.get("k"), (None, None));
        data.set("k", b"v", None).unwrap();
        let (value, cas) = data.get("k");
        assert_eq!(value.as_deref(), Some(&b"v"[..]));
        assert!(cas.is_some());
    }

    #[test]
    fn an_empty_value_reads_as_none_but_keeps_its_cas() {
        let data = SharedData::default();
        data.set("k", b"", None).unwrap();
        let (value, cas) = data.get("k");
        assert_eq!(value, None);
        assert!(cas.is_some());
    }

    #[test]
    fn a_write_with_a_stale_cas_is_refused() {
        let data = SharedData::default();
        data.set("k", b"1", None).unwrap();
        let (_, cas) = data.get("k");
        data.set("k", b"2", cas).unwrap();
        assert_eq!(data.set("k", b"3", cas), Err(WriteError::CasMismatch));
        assert_eq!(data.get("k").0.as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn a_cas_write_of_an_absent_key_succeeds_as_envoys_does() {
        let data = SharedData::default();
        data.set("new", b"v", Some(7)).unwrap();
        assert_eq!(data.get("new").0.as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_shared_queue_hands_items_over_in_order() {
        let queue = SharedQueue::default();
        assert!(queue.enqueue(b"a") && queue.enqueue(b"b"));
        assert_eq!(queue.dequeue().as_deref(), Some(&b"a"[..]));
        assert_eq!(queue.dequeue().as_deref(), Some(&b"b"[..]));
        assert_eq!(queue.dequeue(), None);
    }

    #[test]
    fn concurrent_cas_increments_lose_nothing() {
        let data = std::sync::Arc::new(SharedData::default());
        data.set("n", &0u64.to_le_bytes(), None).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let data = std::sync::Arc::clone(&data);
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        loop {
                            let (value, cas) = data.get("n");
                            let n = value
                                .map(|v| u64::from_le_bytes(v.try_into().unwrap()))
                                .unwrap_or(0);
                            if data.set("n", &(n + 1).to_le_bytes(), cas).is_ok() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let total = u64::from_le_bytes(data.get("n").0.unwrap().try_into().unwrap());
        assert_eq!(total, 2_000);
    }
}
