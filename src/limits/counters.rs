//! Rate-limit counters in Envoy's shared data: one count per key per Envoy, shared by every
//! worker, updated with compare-and-swap so no increment is lost.
//!
//! Shared data has no delete and no eviction, so counters live in a table of slots
//! (`keygate.rl.<n>`) that only ever grows, sized by `wanted_capacity` from the number of
//! limited keys in the snapshot: none when no key has limits. A key probes up to `PROBES`
//! positions (the first is `seed % capacity`, the others spread by a hash); it reuses a slot it
//! owns, else takes the first slot that is free or whose owner has nothing left in any window.
//! A scan stops at a slot never used (no entry yet, or blank), since a key is always placed at
//! or before the first free slot of its sequence. A slot's entry is created by the first
//! request that counts in it, under a creation lock (`create`), so memory follows the keys
//! that are active: a key's slot holds only its non-zero buckets (`slot_codec.rs`).
//!
//! The table itself (its size, marker and growth, re-exported here) is `table.rs`.
//!
//! Growth moves most keys' positions (they depend on the capacity). The marker keeps the
//! capacity before the last growth; a key not found under the current capacity looks there,
//! and moves its counts: it frees the old slot (CAS) and adds what it held to its new slot, so
//! no count is lost or counted twice. A key that holds counts from two growths back starts
//! afresh (two growths within a day need the limited keys to more than double in a day).

use crate::host::{Host, WriteError};
use crate::limits::slot_codec::{self, Slot, FREED};
pub use crate::limits::table::{grow, read_table, slot_count, wanted_capacity};
use crate::limits::table::{lock_name, SlotName, CREATION_LOCKS, LOCK_FREE};
use crate::limits::window::{self, GiveBack, Refusal, SlotState, Usage, Windows};
use keygate_contract::key_hash::Digest;
use keygate_contract::snapshot::Limits;

/// Positions a key may use. At the load `wanted_capacity` allows (¾), all of them are held
/// by active keys with a probability of about 0.75^64 ≈ 10⁻⁸; most scans end at a blank slot
/// or at the key's own slot after one or two reads.
pub const PROBES: u64 = 64;
/// CAS attempts on one slot before giving up on a request.
pub const CAS_ATTEMPTS: usize = 32;
/// Reads of a creation lock held by another worker before giving up. A holder takes it for two
/// host calls, but its thread can be descheduled in between (a few ms on a busy machine): the
/// wait is bounded by this, and by `LOCK_STALE_MS`.
const LOCK_READS: usize = 20_000;
/// A creation lock held longer than this is taken over: its holder cannot still be between
/// the two host calls it holds it for (a worker that stopped there, with Envoy, took it).
const LOCK_STALE_MS: u64 = 1_000;

/// A key's identity in the table: owner tag and probe seed, from its digest.
pub type KeyTag = (u64, u64);

/// Owner tag and probe start of a key, from its SHA-256 digest.
pub fn owner_and_seed(digest: &Digest) -> KeyTag {
    let part = |at: usize| {
        digest
            .get(at..at + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .map_or(0, u64::from_be_bytes)
    };
    (part(0).max(1), part(8))
}

/// The `probe`th position of a key under `capacity` (> 0).
fn position(seed: u64, probe: u64, capacity: u64) -> u64 {
    if probe == 0 {
        return seed % capacity;
    }
    // splitmix64's finaliser: later probes land independently of each other and of the first.
    let mut z = seed.wrapping_add(probe.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % capacity
}

/// A slot read from shared data, with the CAS value to write it back.
struct Read {
    index: u64,
    state: SlotState,
    cas: Option<u32>,
}

/// What a scan of a key's positions under one capacity found.
#[derive(Default)]
struct Scan {
    owned: Option<Read>,
    free: Option<(u64, Option<u32>)>,
}

fn scan(host: &dyn Host, key: KeyTag, windows: &Windows, capacity: u64, now_ms: u64) -> Scan {
    let mut found = Scan::default();
    for probe in 0..PROBES.min(capacity) {
        let index = position(key.1, probe, capacity);
        let (bytes, cas) = host.get_shared(SlotName::new(index).as_str());
        if cas.is_none() {
            // No entry: never used. Created when a key counts in it (`create`).
            found.free.get_or_insert((index, None));
            break;
        }
        match slot_codec::classify(bytes.as_deref()) {
            Slot::Blank => {
                found.free.get_or_insert((index, cas));
                break;
            }
            Slot::Held(state) if (state.owner, state.seed) == key => {
                found.owned = Some(Read { index, state, cas });
                break;
            }
            Slot::Held(state) if !state.idle(windows, now_ms) => {}
            Slot::Held(_) | Slot::Free => {
                found.free.get_or_insert((index, cas));
            }
        }
    }
    found
}

/// Where a key's counts are, or go.
enum Located {
    /// The key's own slot (possibly under the previous capacity, when no new one is free).
    Owned(Read),
    /// No slot yet: this free one.
    Fresh { index: u64, cas: Option<u32> },
    /// The key's slot under the previous capacity, to be freed and merged into a new one.
    Moving(Read),
    /// Nothing held and nothing free.
    Nowhere,
}

fn locate(host: &dyn Host, key: KeyTag, windows: &Windows, capacity: u64, now_ms: u64) -> Located {
    let here = scan(host, key, windows, capacity, now_ms);
    if let Some(read) = here.owned {
        return Located::Owned(read);
    }
    // Not found: only now is the marker worth a read. A worker that has not yet seen the
    // latest growth (it learns it on its next tick) looks where the others do.
    let table = read_table(host);
    let (here, capacity) = if table.capacity > capacity {
        let latest = scan(host, key, windows, table.capacity, now_ms);
        if let Some(read) = latest.owned {
            return Located::Owned(read);
        }
        (latest, table.capacity)
    } else {
        (here, capacity)
    };
    if table.capacity == capacity {
        if let Some(previous) = table.previous_in_use(windows, now_ms) {
            if let Some(read) = scan(host, key, windows, previous, now_ms).owned {
                return if here.free.is_some() {
                    Located::Moving(read)
                } else {
                    Located::Owned(read)
                };
            }
        }
    }
    match here.free {
        Some((index, cas)) => Located::Fresh { index, cas },
        None => Located::Nowhere,
    }
}

/// Why an update could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed {
    NoSlot,
    Contended,
}

/// Reads the key's slot (taking a free one, moving it after a growth), applies `change`, and
/// writes it back with CAS when `change` says it changed (or counts were moved into it);
/// retried on CAS conflicts. Returns the slot and what `change` returned the last time.
fn update<R>(
    host: &dyn Host,
    key: KeyTag,
    windows: &Windows,
    capacity: u64,
    now_ms: u64,
    mut change: impl FnMut(&mut SlotState) -> (bool, R),
) -> Result<(u64, R), Failed> {
    if capacity == 0 {
        return Err(Failed::NoSlot);
    }
    // Counts taken out of a slot under the previous capacity and not yet written anew.
    let mut carried: Option<SlotState> = None;
    for _ in 0..CAS_ATTEMPTS {
        let (index, mut state, cas) = match locate(host, key, windows, capacity, now_ms) {
            Located::Owned(read) => (read.index, read.state, read.cas),
            Located::Fresh { index, cas } => (index, SlotState::for_key(key.0, key.1), cas),
            Located::Moving(old) => {
                let name = SlotName::new(old.index);
                match host.set_shared(name.as_str(), FREED, old.cas) {
                    Ok(()) => match &mut carried {
                        Some(moved) => moved.merge(&old.state, windows, now_ms),
                        None => carried = Some(old.state),
                    },
                    Err(WriteError::CasMismatch) => {}
                    Err(WriteError::Host) => return Err(Failed::NoSlot),
                }
                continue;
            }
            Located::Nowhere => return Err(Failed::NoSlot),
        };
        if let Some(moved) = &carried {
            state.merge(moved, windows, now_ms);
        }
        let (changed, result) = change(&mut state);
        if !changed && carried.is_none() {
            return Ok((index, result));
        }
        let name = SlotName::new(index);
        let bytes = slot_codec::encode(&state);
        let written = match cas {
            Some(cas) => host.set_shared(name.as_str(), bytes.as_bytes(), Some(cas)),
            None => match create(host, index, bytes.as_bytes())? {
                true => Ok(()),
                // Another worker created it first: read it again.
                false => Err(WriteError::CasMismatch),
            },
        };
        match written {
            Ok(()) => return Ok((index, result)),
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host) => return Err(Failed::NoSlot),
        }
    }
    Err(Failed::Contended)
}

/// Creates slot `index` holding `bytes` if it still has no entry, under the creation lock its
/// index maps to: Envoy writes a missing entry unconditionally whatever CAS value is passed, so
/// only the lock (an entry that exists, taken and given back by CAS) keeps two workers from
/// both creating the slot with their own first count. `Ok(false)`: the slot exists now.
fn create(host: &dyn Host, index: u64, bytes: &[u8]) -> Result<bool, Failed> {
    let lock = lock_name(index % CREATION_LOCKS);
    let mut held = false;
    for _ in 0..LOCK_READS {
        let (value, cas) = host.get_shared(&lock);
        if cas.is_none() {
            // No locks: the table was never set up (the lease holder creates them first).
            return Err(Failed::NoSlot);
        }
        let now_ms = host.now_ms();
        let free = match value.as_deref() {
            Some(LOCK_FREE) => true,
            Some([1, at @ ..]) => <[u8; 8]>::try_from(at)
                .map(u64::from_le_bytes)
                .map_or(true, |at| now_ms.saturating_sub(at) > LOCK_STALE_MS),
            _ => true,
        };
        let mut taken = [1u8; 9];
        taken[1..].copy_from_slice(&now_ms.to_le_bytes());
        // Held by a worker creating a slot right now, between two host calls: read again.
        if free && host.set_shared(&lock, &taken, cas).is_ok() {
            held = true;
            break;
        }
    }
    if !held {
        return Err(Failed::Contended);
    }
    let name = SlotName::new(index);
    let absent = host.get_shared(name.as_str()).1.is_none();
    let created = absent && host.set_shared(name.as_str(), bytes, None).is_ok();
    // Ours until given back: nobody else writes a held lock.
    let _ = host.set_shared(&lock, LOCK_FREE, None);
    Ok(created)
}

/// The outcome of counting one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Admitted and counted in `slot`, with `granted - 1` more requests counted ahead
    /// (`credits.rs`). With a concurrency limit, `in_flight` is the in-flight bucket the
    /// request holds a place in: give it back with `release` when the request ends.
    Admitted {
        slot: u64,
        in_flight: Option<u64>,
        usage: Usage,
        granted: u64,
    },
    /// Admitted with a request counted ahead for it (`credits.rs`): no slot was touched.
    Credited {
        usage: Usage,
    },
    Refused {
        refusal: Refusal,
        usage: Usage,
    },
    /// Every probed slot is busy with other active keys, or no slots exist: not counted.
    NoSlot,
    /// Too many concurrent updates of the slot; refuse this one request rather than risk
    /// admitting over the limit.
    Contended,
}

/// What a count asks for besides its own request (`credits.rs`): `want - 1` requests counted
/// ahead, and unused ones of the key to give back in the same write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ahead {
    pub want: u64,
    pub give_back: Option<GiveBack>,
}

impl Ahead {
    /// One request, nothing given back.
    pub const ONE: Ahead = Ahead {
        want: 1,
        give_back: None,
    };
}

/// Counts a request of `key` with `limits` at `now_ms` in a table of `capacity` slots.
pub fn admit(
    host: &dyn Host,
    key: KeyTag,
    limits: &Limits,
    windows: &Windows,
    capacity: u64,
    now_ms: u64,
    ahead: Ahead,
) -> Admission {
    let outcome = update(host, key, windows, capacity, now_ms, |state| {
        let gave_back = ahead
            .give_back
            .is_some_and(|back| state.give_back(&back, windows, now_ms));
        let (result, usage) = window::admit(state, limits, windows, now_ms, ahead.want);
        (result.is_ok() || gave_back, (result, usage))
    });
    match outcome {
        Ok((slot, (Ok(granted), usage))) => Admission::Admitted {
            slot,
            in_flight: limits.concurrent.map(|_| windows.in_flight_bucket(now_ms)),
            usage,
            granted,
        },
        Ok((_, (Err(refusal), usage))) => Admission::Refused { refusal, usage },
        Err(Failed::NoSlot) => Admission::NoSlot,
        Err(Failed::Contended) => Admission::Contended,
    }
}

/// Gives back requests of `key` counted ahead and never used (the key's credits, when another
/// key takes their place in a worker, or they outlived their time, `credits.rs`). The slot
/// written, if any: none when nothing of them was still counted (or no slot could be had).
pub fn give_back(
    host: &dyn Host,
    key: KeyTag,
    back: &GiveBack,
    windows: &Windows,
    capacity: u64,
    now_ms: u64,
) -> Option<u64> {
    match update(host, key, windows, capacity, now_ms, |state| {
        let taken = state.give_back(back, windows, now_ms);
        (taken, taken)
    }) {
        Ok((slot, true)) => Some(slot),
        Ok((_, false)) | Err(_) => None,
    }
}

/// The counters in slot `index`, if it holds a key's.
pub fn read_slot(host: &dyn Host, index: u64) -> Option<SlotState> {
    match slot_codec::classify(host.get_shared(SlotName::new(index).as_str()).0.as_deref()) {
        Slot::Held(state) => Some(state),
        Slot::Blank | Slot::Free => None,
    }
}

/// Writes what the rest of the fleet admitted of `key` (per window, `(bucket, count)`) into
/// its slot, taking a free one if it has none yet, so its next request here is judged
/// fleet-wide. `false` when no slot could be had.
pub fn set_remote(
    host: &dyn Host,
    key: KeyTag,
    remote: &[Vec<(u64, u64)>; 3],
    windows: &Windows,
    capacity: u64,
    now_ms: u64,
) -> bool {
    update(host, key, windows, capacity, now_ms, |state| {
        for (window, buckets) in remote.iter().enumerate() {
            state.set_remote(window, buckets, windows, now_ms);
        }
        (true, ())
    })
    .is_ok()
}

/// Ends an in-flight request of `key` that took a place in in-flight bucket `bucket`, counted
/// in `slot`. `false` when there is nothing to give back (the place expired, or the key's
/// slot is gone). If the key moved since (the table grew), its place moved with it.
pub fn release(
    host: &dyn Host,
    slot: u64,
    key: KeyTag,
    bucket: u64,
    windows: &Windows,
    now_ms: u64,
) -> bool {
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = host.get_shared(SlotName::new(slot).as_str());
        let read = match slot_codec::classify(bytes.as_deref()) {
            Slot::Held(state) if (state.owner, state.seed) == key => Read {
                index: slot,
                state,
                cas,
            },
            _ => match locate(host, key, windows, slot_count(host), now_ms) {
                Located::Owned(read) | Located::Moving(read) => read,
                Located::Fresh { .. } | Located::Nowhere => return false,
            },
        };
        let mut state = read.state;
        if !state.release(windows, bucket, now_ms) {
            return false;
        }
        let name = SlotName::new(read.index);
        match host.set_shared(
            name.as_str(),
            slot_codec::encode(&state).as_bytes(),
            read.cas,
        ) {
            Ok(()) => return true,
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests;
