//! What a worker's requests gather for the background jobs: the usage tally, the rate-limit
//! slots they counted in, and the slot count the jobs publish back. Behind locks so that the
//! native build's background thread can take it from every Envoy worker thread; the Wasm build
//! has one thread per VM, where the locks are never contended (and compile to plain flags on
//! `wasm32-wasip1`, which has no threads).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::limits::touched::Touched;
use crate::sync::tally::Tally;

#[derive(Default)]
pub struct Gathered {
    /// The worker's usage since it last handed it to the reporter.
    tally: Mutex<Tally>,
    /// Slots whose counts the worker changed since it last handed them to the fleet sync.
    touched: Mutex<Touched>,
    /// Rate-limit slots known to exist (refreshed on every tick).
    slots: AtomicU64,
}

/// The lock's value even after a holder panicked: a tally half-updated by a panicking thread
/// is still the best count there is, and the filter must not panic in turn.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Gathered {
    pub fn tally(&self) -> MutexGuard<'_, Tally> {
        lock(&self.tally)
    }

    pub fn touched(&self) -> MutexGuard<'_, Touched> {
        lock(&self.touched)
    }

    pub fn slots(&self) -> u64 {
        self.slots.load(Ordering::Relaxed)
    }

    pub fn set_slots(&self, slots: u64) {
        self.slots.store(slots, Ordering::Relaxed)
    }
}
