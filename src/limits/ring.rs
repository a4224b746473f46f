//! A ring of bucket counters, the unit every window and the in-flight count are made of
//! (`window.rs`): a fixed array, so a slot's state stays `Copy` and the request path never
//! touches the heap.

/// The longest ring; every ring is an array of this many counters, the tail unused.
pub const MAX_RING: usize = 31;

/// A ring of bucket counters: `len` of them are used (a window's `RING_LENS`, or
/// `IN_FLIGHT_BUCKETS`).
#[derive(Debug, Clone, Copy, Eq)]
pub struct Ring {
    /// Absolute index (`now / bucket_ms`) of the newest bucket written.
    pub newest: u64,
    len: usize,
    counts: [u32; MAX_RING],
}

/// An empty ring's newest bucket says nothing (it is not stored), so it is not compared.
impl PartialEq for Ring {
    fn eq(&self, other: &Ring) -> bool {
        self.len == other.len
            && self.counts == other.counts
            && (self.newest == other.newest || self.is_empty())
    }
}

impl Ring {
    pub fn with_len(len: usize) -> Ring {
        Ring {
            newest: 0,
            len: len.clamp(1, MAX_RING),
            counts: [0; MAX_RING],
        }
    }

    /// Counters in use, by ring position (`bucket % len`).
    pub fn counts(&self) -> &[u32] {
        &self.counts[..self.len]
    }

    /// Sets the counter at ring position `index` (ignored past the ring).
    pub fn set_count(&mut self, index: usize, count: u32) {
        if index < self.len {
            self.counts[index] = count;
        }
    }

    pub(super) fn index(&self, bucket: u64) -> usize {
        (bucket % self.len as u64) as usize
    }

    /// Moves the ring forward to `bucket`, zeroing buckets that fell out. Runs for every ring
    /// of a slot on every request, so it walks the ring without a division per step.
    pub(super) fn advance(&mut self, bucket: u64) {
        if bucket <= self.newest {
            return;
        }
        let steps = bucket - self.newest;
        if steps >= self.len as u64 {
            self.counts = [0; MAX_RING];
        } else {
            let mut index = self.index(self.newest);
            for _ in 0..steps {
                index = if index + 1 == self.len { 0 } else { index + 1 };
                self.counts[index] = 0;
            }
        }
        self.newest = bucket;
    }

    pub(super) fn total(&self) -> u64 {
        self.counts().iter().map(|&c| u64::from(c)).sum()
    }

    pub fn is_empty(&self) -> bool {
        // Unused tail counters are always 0: one branch-free pass over the array.
        self.counts.iter().fold(0, |any, &c| any | c) == 0
    }

    /// Empties every bucket (the newest stays).
    pub(super) fn clear(&mut self) {
        self.counts = [0; MAX_RING];
    }

    pub(super) fn add(&mut self, bucket: u64, count: u32) {
        let index = self.index(bucket);
        self.counts[index] = self.counts[index].saturating_add(count);
    }

    /// The non-zero buckets as `(absolute bucket, count)`, oldest first.
    pub(super) fn buckets(&self) -> Vec<(u64, u64)> {
        let len = self.len as u64;
        (0..len.min(self.newest.saturating_add(1)))
            .rev()
            .map(|age| self.newest - age)
            .filter_map(|bucket| {
                let count = self.counts[self.index(bucket)];
                (count > 0).then_some((bucket, u64::from(count)))
            })
            .collect()
    }

    /// Whether `bucket` is one the ring holds now.
    pub(super) fn holds(&self, bucket: u64) -> bool {
        bucket <= self.newest && self.newest - bucket < self.len as u64
    }

    /// Adds `other`'s counts bucket by bucket (both advanced to the same bucket).
    pub(super) fn add_ring(&mut self, other: &Ring) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// Keeps the larger count of each bucket (both advanced to the same bucket).
    pub(super) fn max_ring(&mut self, other: &Ring) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = (*mine).max(*theirs);
        }
    }

    /// Milliseconds from `now_ms` until the total drops to `target` or below, as the oldest
    /// buckets leave the ring. `None` if it already is.
    pub(super) fn wait_until_total_at_most(
        &self,
        target: u64,
        bucket_ms: u64,
        now_ms: u64,
    ) -> Option<u64> {
        let mut total = self.total();
        if total <= target {
            return None;
        }
        let len = self.len as u64;
        // Oldest bucket in the ring is newest - (len - 1); it leaves when the current bucket
        // index reaches newest + 1, the next one at newest + 2, and so on.
        // Bucket `newest + k + 1 - len` sits at the ring index after the newest one's.
        let mut index = self.index(self.newest);
        for k in 0..len {
            index = if index + 1 == self.len { 0 } else { index + 1 };
            total -= u64::from(self.counts[index]);
            if total <= target {
                // Saturating: a slot read back from shared data may hold any `newest`.
                let frees_at_ms = self.newest.saturating_add(k + 1).saturating_mul(bucket_ms);
                return Some(frees_at_ms.saturating_sub(now_ms).max(1));
            }
        }
        Some(bucket_ms)
    }

    /// Takes back up to `count` counts of `bucket` (nothing once it left the ring); whether
    /// any were there to take.
    pub(super) fn subtract(&mut self, bucket: u64, count: u64) -> bool {
        if !self.holds(bucket) {
            return false;
        }
        let index = self.index(bucket);
        let before = self.counts[index];
        self.counts[index] = before.saturating_sub(u32::try_from(count).unwrap_or(u32::MAX));
        before > 0 && count > 0
    }

    /// Gives back one count taken in `bucket`; `false` if it already left the ring (or was
    /// never there).
    pub(super) fn remove(&mut self, bucket: u64) -> bool {
        if !self.holds(bucket) {
            return false;
        }
        let index = self.index(bucket);
        if self.counts[index] == 0 {
            return false;
        }
        self.counts[index] -= 1;
        true
    }
}
