//! The table of rate-limit slots in shared data: its size, its marker and its growth.
//!
//! The table is sized by the limited keys in the snapshot (`wanted_capacity`): none for none,
//! else room for all of them active at once with the table at most ¾ full. The capacity is
//! only an address space: a slot's entry is created by the first request that counts in it,
//! so memory follows the keys that are active, not the keys that could be. Envoy writes a
//! missing entry unconditionally whatever CAS value is passed, so two workers creating the
//! same slot could each write their first count and lose one: a slot is created only under
//! one of `CREATION_LOCKS` lock entries (`counters::create`), which the refresh lease holder
//! creates (`grow`) before it publishes any capacity, so every lock is a real CAS. The marker
//! also keeps the capacity before the last growth, so keys can find and move the counts they
//! hold there (`counters.rs`).

use crate::host::{Host, WriteError};
use crate::limits::stack_text::StackText;
use crate::limits::window::Windows;

pub(crate) const TABLE_MARKER: &str = "keygate.rl.slots";
/// Locks that serialise the creation of slots (a slot uses lock `index % CREATION_LOCKS`).
pub const CREATION_LOCKS: u64 = 64;
/// A free creation lock (never empty: shared data reads an empty value as absent). A held one
/// is `1` followed by the proxy-clock ms it was taken at (`counters::create`).
pub(crate) const LOCK_FREE: &[u8] = &[0];
const SLOT_PREFIX: &str = "keygate.rl.";
/// The smallest table created once any key has limits.
pub const MIN_CAPACITY: u64 = 1024;

/// `keygate.rl.<index>` in a stack buffer (looked up on every probe, so never allocated).
pub(crate) struct SlotName(StackText<32>);

impl SlotName {
    pub(crate) fn new(index: u64) -> SlotName {
        let mut name = StackText::new();
        name.push(SLOT_PREFIX);
        name.decimal(index);
        SlotName(name)
    }

    pub(crate) fn as_str(&self) -> &str {
        self.0.as_str()
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
    pub(crate) fn encode(&self) -> [u8; 24] {
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
    pub(crate) fn previous_in_use(&self, windows: &Windows, now_ms: u64) -> Option<u64> {
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

/// The name of creation lock `index` (`keygate.rl.lock.<index>`).
pub(crate) fn lock_name(index: u64) -> String {
    format!("keygate.rl.lock.{index}")
}

/// The growth step, run by the refresh lease holder after it applied a snapshot: when
/// `wanted` (at most `bound`) exceeds the capacity, makes sure the creation locks exist, then
/// publishes a capacity of at least half again the current one (so a snapshot that grows key
/// by key does not grow the table on every refresh). Creates no slot: requests do, as keys
/// become active. Never shrinks: shared data cannot delete.
pub fn grow(host: &dyn Host, wanted: u64, bound: u64, now_ms: u64) -> Result<Table, WriteError> {
    let (table, cas) = read_table_with_cas(host);
    let wanted = wanted.min(bound);
    if wanted <= table.capacity {
        return Ok(table);
    }
    let target = wanted
        .max(table.capacity.saturating_add(table.capacity / 2))
        .min(bound);
    for index in 0..CREATION_LOCKS {
        let name = lock_name(index);
        // Only locks that do not exist yet: one may be held by a worker creating a slot.
        if host.get_shared(&name).1.is_none() {
            host.set_shared(&name, LOCK_FREE, None)?;
        }
    }
    let grown = Table {
        capacity: target,
        previous: table.capacity,
        grown_at_ms: now_ms,
    };
    host.set_shared(TABLE_MARKER, &grown.encode(), cas)?;
    Ok(grown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;
    use crate::limits::counters::read_slot;

    #[test]
    fn slot_names_are_the_index_in_decimal() {
        for (index, name) in [
            (0, "keygate.rl.0"),
            (7, "keygate.rl.7"),
            (1_334_271, "keygate.rl.1334271"),
            (u64::MAX, "keygate.rl.18446744073709551615"),
        ] {
            assert_eq!(SlotName::new(index).as_str(), name);
        }
    }

    #[test]
    fn capacity_follows_the_limited_keys() {
        for (keys, capacity) in [
            (0, 0),
            (1, 1_024),
            (768, 1_024),
            (769, 2_048),
            (100_000, 134_144),
            (1_000_000, 1_334_272),
        ] {
            assert_eq!(wanted_capacity(keys), capacity, "{keys} keys");
            assert!(capacity == 0 || keys * 4 <= capacity * 3);
        }
        assert!(
            wanted_capacity(u64::MAX) >= u64::MAX / 4,
            "saturates, never wraps"
        );
    }

    #[test]
    fn the_table_grows_by_half_at_least_within_its_bound_and_never_shrinks() {
        let host = FakeHost::at(0);
        assert_eq!(grow(&host, 1_024, 1 << 20, 5).unwrap().capacity, 1_024);
        // The marker and the creation locks; no slot until a key counts in one.
        let entries = 1 + CREATION_LOCKS as usize;
        assert_eq!(host.entry_count(), entries);
        let grown = grow(&host, 1_100, 1 << 20, 9).unwrap();
        assert_eq!(
            grown,
            Table {
                capacity: 1_536,
                previous: 1_024,
                grown_at_ms: 9
            }
        );
        assert_eq!(grow(&host, 10, 1 << 20, 10).unwrap().capacity, 1_536);
        assert_eq!(grow(&host, 5_000, 2_000, 11).unwrap().capacity, 2_000);
        assert_eq!(grow(&host, 5_000, 2_000, 12).unwrap().capacity, 2_000);
        assert_eq!(host.entry_count(), entries);
        assert_eq!(read_slot(&host, 1_999), None, "not created");
        assert_eq!(slot_count(&host), 2_000);
    }
}
