//! A per-replica cache of encoded delta pages: when N proxies at version V wake for V+1 and all
//! ask `since=V`, the page is read and encoded once and the same bytes go to all of them.
//! Bounded in entries and bytes; concurrent misses for one key share one build in flight.

use bytes::Bytes;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::OnceCell;

/// An encoded page as sent: its body and its ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPage {
    pub body: Bytes,
    pub etag: String,
}

type Slot = Arc<OnceCell<EncodedPage>>;

/// Recent encoded pages by key (epoch, since, version, encoding, page size), oldest first.
pub struct DeltaCache<K> {
    slots: Mutex<VecDeque<(K, Slot)>>,
    max_entries: usize,
    max_bytes: usize,
    builds: AtomicU64,
}

impl<K: Eq + Clone> DeltaCache<K> {
    /// A cache holding at most `max_entries` pages and about `max_bytes` of bodies.
    pub fn new(max_entries: usize, max_bytes: usize) -> DeltaCache<K> {
        DeltaCache {
            slots: Mutex::new(VecDeque::new()),
            max_entries: max_entries.max(1),
            max_bytes,
            builds: AtomicU64::new(0),
        }
    }

    fn slots(&self) -> MutexGuard<'_, VecDeque<(K, Slot)>> {
        // A poisoned lock only means another poll panicked mid-update of a plain queue.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The page for `key`, built by `build` only if no other caller has built it or is building
    /// it now. A failed build is not cached: the next caller tries again.
    pub async fn get_or_build<F, Fut, E>(&self, key: K, build: F) -> Result<EncodedPage, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<EncodedPage, E>>,
    {
        let slot = self.slot(key);
        let page = slot
            .get_or_try_init(|| async {
                self.builds.fetch_add(1, Ordering::Relaxed);
                build().await
            })
            .await?
            .clone();
        self.trim();
        Ok(page)
    }

    fn slot(&self, key: K) -> Slot {
        let mut slots = self.slots();
        if let Some((_, slot)) = slots.iter().find(|(held, _)| *held == key) {
            return slot.clone();
        }
        let slot = Slot::default();
        slots.push_back((key, slot.clone()));
        while slots.len() > self.max_entries {
            slots.pop_front();
        }
        slot
    }

    /// Drops the oldest built pages until the bodies fit the byte budget (the newest stays, so
    /// one page larger than the budget is still shared by the polls that wake for it).
    fn trim(&self) {
        let mut slots = self.slots();
        while slots.len() > 1 && bytes_held(&slots) > self.max_bytes {
            slots.pop_front();
        }
    }

    /// Bytes of the bodies held now.
    pub fn bytes(&self) -> usize {
        bytes_held(&self.slots())
    }

    /// Pages held (built or in flight).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.slots().len()
    }

    /// Pages built since start: one per distinct request, not one per poll.
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }
}

fn bytes_held<K>(slots: &VecDeque<(K, Slot)>) -> usize {
    slots
        .iter()
        .filter_map(|(_, slot)| slot.get())
        .map(|page| page.body.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn page(body: &str) -> EncodedPage {
        EncodedPage {
            body: Bytes::from(body.to_string()),
            etag: format!("\"{body}\""),
        }
    }

    async fn built(cache: &DeltaCache<u64>, key: u64, body: &str) -> EncodedPage {
        let body = body.to_string();
        let result: Result<_, Infallible> = cache
            .get_or_build(key, || async move { Ok(page(&body)) })
            .await;
        result.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_polls_for_one_key_share_one_build() {
        let cache = Arc::new(DeltaCache::<u64>::new(8, 1 << 20));
        let gate = Arc::new(tokio::sync::Notify::new());
        let polls: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                let gate = gate.clone();
                tokio::spawn(async move {
                    let result: Result<_, Infallible> = cache
                        .get_or_build(7, || async move {
                            gate.notified().await;
                            Ok(page("v8"))
                        })
                        .await;
                    result.unwrap()
                })
            })
            .collect();
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while cache.entries() == 0 || cache.builds() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        gate.notify_one();
        for poll in polls {
            assert_eq!(poll.await.unwrap(), page("v8"));
        }
        assert_eq!(cache.builds(), 1);
    }

    #[tokio::test]
    async fn distinct_keys_build_apart_and_a_failed_build_is_retried() {
        let cache = DeltaCache::<u64>::new(8, 1 << 20);
        assert_eq!(built(&cache, 1, "a").await, page("a"));
        assert_eq!(built(&cache, 2, "b").await, page("b"));
        assert_eq!(built(&cache, 1, "ignored").await, page("a"));
        let failed: Result<EncodedPage, &str> = cache
            .get_or_build(3, || async { Err("database down") })
            .await;
        assert_eq!(failed, Err("database down"));
        assert_eq!(built(&cache, 3, "c").await, page("c"));
        assert_eq!(cache.builds(), 4);
    }

    #[tokio::test]
    async fn bounded_in_entries_and_bytes() {
        let cache = DeltaCache::<u64>::new(3, 1 << 20);
        for key in 0..10 {
            built(&cache, key, "x").await;
        }
        assert_eq!(cache.entries(), 3);
        let cache = DeltaCache::<u64>::new(100, 10);
        for key in 0..10 {
            built(&cache, key, "four").await;
        }
        assert!(cache.bytes() <= 10, "{} bytes held", cache.bytes());
        assert_eq!(built(&cache, 9, "rebuilt").await, page("four"));
        assert_eq!(built(&cache, 0, "rebuilt").await, page("rebuilt"));
    }
}
