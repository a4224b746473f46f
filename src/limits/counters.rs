//! Rate-limit counters in Envoy's shared data: one count per key per Envoy, shared by every
//! worker, updated with compare-and-swap so no increment is lost.
//!
//! Shared data has no delete and no eviction, so counters live in a table of slots
//! (`keygate.rl.<n>`) that only ever grows, sized by `wanted_capacity` from the number of
//! limited keys in the snapshot: none when no key has limits. A key probes up to `PROBES`
//! positions (the first is `seed % capacity`, the others spread by a hash); it reuses a slot it
//! owns, else takes the first slot that is free or whose owner has nothing left in any window.
//! A scan stops at a blank slot (never used), since a key is always placed at or before the
//! first free slot of its sequence. Memory follows the limited keys: a blank slot is one byte
//! plus Envoy's entry, a key's slot holds only its non-zero buckets (`slot_codec.rs`).
//!
//! Only the refresh lease holder creates slots (`grow`), before publishing the new capacity:
//! Envoy writes a missing entry unconditionally whatever CAS value is passed, so a worker that
//! created one on demand could race with another worker's first increment and lose it. Workers
//! only ever write slots below a capacity that was published after they were created.
//!
//! Growth moves most keys' positions (they depend on the capacity). The marker keeps the
//! capacity before the last growth; a key not found under the current capacity looks there,
//! and moves its counts: it frees the old slot (CAS) and adds what it held to its new slot, so
//! no count is lost or counted twice. A key that holds counts from two growths back starts
//! afresh (two growths within a day need the limited keys to more than double in a day).

use crate::contract::key_hash::Digest;
use crate::contract::snapshot::Limits;
use crate::host::{Host, WriteError};
use crate::limits::slot_codec::{self, Slot, BLANK, FREED};
use crate::limits::window::{self, Refusal, SlotState, Usage, Windows};

const TABLE_MARKER: &str = "keygate.rl.slots";
const SLOT_PREFIX: &[u8] = b"keygate.rl.";
/// Positions a key may use. At the load `wanted_capacity` allows (¾), all of them are held
/// by active keys with a probability of about 0.75^64 ≈ 10⁻⁸; most scans end at a blank slot
/// or at the key's own slot after one or two reads.
pub const PROBES: u64 = 64;
/// CAS attempts on one slot before giving up on a request.
pub const CAS_ATTEMPTS: usize = 32;
/// The smallest table created once any key has limits.
pub const MIN_CAPACITY: u64 = 1024;

/// A key's identity in the table: owner tag and probe seed, from its digest.
pub type KeyTag = (u64, u64);

/// `keygate.rl.<index>` in a stack buffer (looked up on every probe, so never allocated).
struct SlotName {
    bytes: [u8; 32],
    len: usize,
}

impl SlotName {
    fn new(index: u64) -> SlotName {
        let mut name = SlotName {
            bytes: [0; 32],
            len: SLOT_PREFIX.len(),
        };
        name.bytes[..SLOT_PREFIX.len()].copy_from_slice(SLOT_PREFIX);
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = index;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for &digit in &digits[at..] {
            name.bytes[name.len] = digit;
            name.len += 1;
        }
        name
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("keygate.rl.")
    }
}

/// The table's shape, as the lease holder last published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Table {
    /// Slots `0..capacity` exist.
    pub capacity: u64,
    /// The capacity before the last growth (0: none).
    pub previous: u64,
    /// When the last growth was published (proxy clock ms).
    pub grown_at_ms: u64,
}

impl Table {
    fn encode(&self) -> [u8; 24] {
        let mut bytes = [0; 24];
        bytes[..8].copy_from_slice(&self.capacity.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.previous.to_le_bytes());
        bytes[16..].copy_from_slice(&self.grown_at_ms.to_le_bytes());
        bytes
    }

    /// Older filters wrote only the capacity (8 bytes).
    fn decode(bytes: &[u8]) -> Table {
        let u64_at = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        Table {
            capacity: u64_at(0),
            previous: u64_at(8),
            grown_at_ms: u64_at(16),
        }
    }

    /// The capacity keys may still hold counts under, besides the current one.
    fn previous_in_use(&self, windows: &Windows, now_ms: u64) -> Option<u64> {
        let expires_ms = self.grown_at_ms.saturating_add(windows.longest_memory_ms());
        (self.previous > 0 && self.previous < self.capacity && now_ms < expires_ms)
            .then_some(self.previous)
    }
}

fn read_table_with_cas(host: &dyn Host) -> (Table, Option<u32>) {
    let (bytes, cas) = host.get_shared(TABLE_MARKER);
    (bytes.as_deref().map(Table::decode).unwrap_or_default(), cas)
}

/// The table as last published.
pub fn read_table(host: &dyn Host) -> Table {
    read_table_with_cas(host).0
}

/// Number of slots that exist (0 before the lease holder created any).
pub fn slot_count(host: &dyn Host) -> u64 {
    read_table(host).capacity
}

/// The capacity for `limited_keys` keys with limits in the snapshot: none for none, else room
/// for every one of them to be active at once with the table at most ¾ full (rounded up to
/// a multiple of 1,024).
pub fn wanted_capacity(limited_keys: u64) -> u64 {
    if limited_keys == 0 {
        return 0;
    }
    limited_keys
        .saturating_mul(4)
        .div_ceil(3)
        .max(MIN_CAPACITY)
        .div_ceil(1024)
        .saturating_mul(1024)
}

/// The growth step, run by the refresh lease holder after it applied a snapshot: when
/// `wanted` (at most `bound`) exceeds the capacity, creates blank slots up to at least half
/// again the current capacity (so a snapshot that grows key by key does not grow the table
/// on every refresh), then publishes the new capacity. Never shrinks: shared data cannot
/// delete.
pub fn grow(host: &dyn Host, wanted: u64, bound: u64, now_ms: u64) -> Result<Table, WriteError> {
    let (table, cas) = read_table_with_cas(host);
    let wanted = wanted.min(bound);
    if wanted <= table.capacity {
        return Ok(table);
    }
    let target = wanted
        .max(table.capacity.saturating_add(table.capacity / 2))
        .min(bound);
    for index in table.capacity..target {
        host.set_shared(SlotName::new(index).as_str(), BLANK, None)?;
    }
    let grown = Table {
        capacity: target,
        previous: table.capacity,
        grown_at_ms: now_ms,
    };
    host.set_shared(TABLE_MARKER, &grown.encode(), cas)?;
    Ok(grown)
}

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
            continue;
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
        match host.set_shared(name.as_str(), slot_codec::encode(&state).as_bytes(), cas) {
            Ok(()) => return Ok((index, result)),
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host) => return Err(Failed::NoSlot),
        }
    }
    Err(Failed::Contended)
}

/// The outcome of counting one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Admitted and counted in `slot`. With a concurrency limit, `in_flight` is the in-flight
    /// bucket the request holds a place in: give it back with `release` when the request ends.
    Admitted {
        slot: u64,
        in_flight: Option<u64>,
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

/// Counts a request of `key` with `limits` at `now_ms` in a table of `capacity` slots.
pub fn admit(
    host: &dyn Host,
    key: KeyTag,
    limits: &Limits,
    windows: &Windows,
    capacity: u64,
    now_ms: u64,
) -> Admission {
    let outcome = update(host, key, windows, capacity, now_ms, |state| {
        let (result, usage) = window::admit(state, limits, windows, now_ms);
        (result.is_ok(), (result, usage))
    });
    match outcome {
        Ok((slot, (Ok(()), usage))) => Admission::Admitted {
            slot,
            in_flight: limits.concurrent.map(|_| windows.in_flight_bucket(now_ms)),
            usage,
        },
        Ok((_, (Err(refusal), usage))) => Admission::Refused { refusal, usage },
        Err(Failed::NoSlot) => Admission::NoSlot,
        Err(Failed::Contended) => Admission::Contended,
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
