//! The slots a worker counted in since it last handed them to the fleet sync.
//!
//! Noted on every admitted request, so noting must be cheap: a small direct-mapped filter of
//! recently noted slots drops the repeats of a busy key, and the rest is a push onto a list
//! whose capacity is kept between ticks. The list may hold a slot twice (the filter forgets);
//! the sync, off the request path, sorts and deduplicates.

const RECENT: usize = 256;

pub struct Touched {
    /// `slot + 1` of the last slot noted at each `slot % RECENT` (0: none).
    recent: [u64; RECENT],
    slots: Vec<u64>,
}

impl Default for Touched {
    fn default() -> Touched {
        Touched {
            recent: [0; RECENT],
            slots: Vec::new(),
        }
    }
}

impl Touched {
    pub fn insert(&mut self, slot: u64) {
        let marker = slot.wrapping_add(1);
        if let Some(recent) = self.recent.get_mut((slot % RECENT as u64) as usize) {
            if *recent == marker {
                return;
            }
            *recent = marker;
        }
        self.slots.push(slot);
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slots noted since the last call, sorted and without repeats; starts afresh.
    pub fn take_sorted(&mut self) -> Vec<u64> {
        self.recent = [0; RECENT];
        let mut slots = std::mem::take(&mut self.slots);
        slots.sort_unstable();
        slots.dedup();
        self.slots = Vec::with_capacity(slots.capacity());
        slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_dropped_and_every_slot_comes_out_once() {
        let mut touched = Touched::default();
        assert!(touched.is_empty());
        for slot in [5, 5, 5, 261, 5, 261, 1_000_000, 5] {
            touched.insert(slot);
        }
        assert!(!touched.is_empty());
        assert_eq!(touched.take_sorted(), vec![5, 261, 1_000_000]);
        assert!(touched.is_empty());
        touched.insert(5);
        assert_eq!(
            touched.take_sorted(),
            vec![5],
            "noted again after a hand-over"
        );
    }
}
