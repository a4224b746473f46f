//! Rate-limit counters in Envoy's shared data: one count per key per Envoy, shared by every
//! worker, updated with compare-and-swap so no increment is lost.
//!
//! Shared data has no delete and no eviction, so counters live in a fixed table of `slots`
//! entries (`keygate.rl.<n>`), created blank once by the refresh lease holder before the first
//! snapshot is served. A key hashes to a slot and probes a few neighbours; a slot whose owner
//! has nothing left in any window is reused. Memory is therefore bounded by the slot count,
//! whatever the number of keys. Creating the slots up front matters: Envoy writes a missing
//! entry unconditionally whatever CAS value is passed, so creating one on demand could race
//! with another worker's first increment and lose it.

use crate::contract::key_hash::Digest;
use crate::contract::snapshot::Limits;
use crate::host::{Host, WriteError};
use crate::limits::window::{self, Refusal, SlotState, Usage, Windows};

const SLOTS_MARKER: &str = "keygate.rl.slots";
/// Neighbouring slots a key may use when its own is held by another active key.
pub const PROBES: u64 = 8;
/// CAS attempts on one slot before giving up on a request.
pub const CAS_ATTEMPTS: usize = 32;

fn slot_key(index: u64) -> String {
    format!("keygate.rl.{index}")
}

/// Number of slots that exist (0 before the lease holder created them).
pub fn slot_count(host: &dyn Host) -> u64 {
    host.get_shared(SLOTS_MARKER)
        .0
        .and_then(|bytes| {
            bytes
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        })
        .unwrap_or(0)
}

/// Creates blank slots up to `wanted`. Only the refresh lease holder calls this, so the
/// unconditional creation cannot race with counting (requests count only once slots exist).
pub fn ensure_slots(host: &dyn Host, wanted: u64) -> Result<u64, WriteError> {
    let existing = slot_count(host);
    if existing >= wanted {
        return Ok(existing);
    }
    for index in existing..wanted {
        host.set_shared(&slot_key(index), &[0], None)?;
    }
    host.set_shared(SLOTS_MARKER, &wanted.to_le_bytes(), None)?;
    Ok(wanted)
}

/// Owner tag and probe start of a key, from its SHA-256 digest.
pub fn owner_and_seed(digest: &Digest) -> (u64, u64) {
    let part = |at: usize| {
        digest
            .get(at..at + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .map_or(0, u64::from_be_bytes)
    };
    (part(0).max(1), part(8))
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

/// The slot to count `owner` in: one it already owns among its probes (so a key never splits
/// its counts across two slots), else the first free or idle one. With the slot's bytes and CAS.
fn choose_slot(
    host: &dyn Host,
    owner: u64,
    seed: u64,
    windows: &Windows,
    slots: u64,
    now_ms: u64,
) -> Option<(u64, SlotState, Option<u32>)> {
    let mut free = None;
    for probe in 0..PROBES.min(slots) {
        let index = seed.wrapping_add(probe) % slots;
        let (bytes, cas) = host.get_shared(&slot_key(index));
        if cas.is_none() {
            continue;
        }
        match bytes.as_deref().and_then(SlotState::decode) {
            Some(state) if state.owner == owner => return Some((index, state, cas)),
            Some(state) if !state.idle(windows, now_ms) => {}
            _ if free.is_none() => free = Some((index, SlotState::for_key(owner, seed), cas)),
            _ => {}
        }
    }
    free
}

/// Counts a request of the key `(owner, seed)` with `limits` at `now_ms`.
pub fn admit(
    host: &dyn Host,
    owner: u64,
    seed: u64,
    limits: &Limits,
    windows: &Windows,
    slots: u64,
    now_ms: u64,
) -> Admission {
    if slots == 0 {
        return Admission::NoSlot;
    }
    for _ in 0..CAS_ATTEMPTS {
        let Some((index, mut state, cas)) = choose_slot(host, owner, seed, windows, slots, now_ms)
        else {
            return Admission::NoSlot;
        };
        let (result, usage) = window::admit(&mut state, limits, windows, now_ms);
        if let Err(refusal) = result {
            return Admission::Refused { refusal, usage };
        }
        match host.set_shared(&slot_key(index), &state.encode(), cas) {
            Ok(()) => {
                return Admission::Admitted {
                    slot: index,
                    in_flight: limits.concurrent.map(|_| windows.in_flight_bucket(now_ms)),
                    usage,
                }
            }
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host) => return Admission::NoSlot,
        }
    }
    Admission::Contended
}

/// The counters in slot `index`, if it holds a key's.
pub fn read_slot(host: &dyn Host, index: u64) -> Option<SlotState> {
    host.get_shared(&slot_key(index))
        .0
        .as_deref()
        .and_then(SlotState::decode)
        .filter(|state| state.owner != 0)
}

/// Writes what the rest of the fleet admitted of the key `(owner, seed)` (per window,
/// `(bucket, count)`) into its slot, taking a free one if it has none yet, so its next request
/// here is judged fleet-wide. `false` when no slot could be had.
pub fn set_remote(
    host: &dyn Host,
    (owner, seed): (u64, u64),
    remote: &[Vec<(u64, u64)>; 3],
    windows: &Windows,
    slots: u64,
    now_ms: u64,
) -> bool {
    if slots == 0 {
        return false;
    }
    for _ in 0..CAS_ATTEMPTS {
        let Some((index, mut state, cas)) = choose_slot(host, owner, seed, windows, slots, now_ms)
        else {
            return false;
        };
        for (window, buckets) in remote.iter().enumerate() {
            state.set_remote(window, buckets, windows, now_ms);
        }
        match host.set_shared(&slot_key(index), &state.encode(), cas) {
            Ok(()) => return true,
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host) => return false,
        }
    }
    false
}

/// Ends an in-flight request of `owner` that took a place in in-flight bucket `bucket` of
/// `slot`. `false` when there is nothing to give back (the place expired, or the slot has
/// another owner now).
pub fn release(
    host: &dyn Host,
    slot: u64,
    owner: u64,
    bucket: u64,
    windows: &Windows,
    now_ms: u64,
) -> bool {
    let key = slot_key(slot);
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = host.get_shared(&key);
        let Some(mut state) = bytes.as_deref().and_then(SlotState::decode) else {
            return false;
        };
        if state.owner != owner || !state.release(windows, bucket, now_ms) {
            return false;
        }
        match host.set_shared(&key, &state.encode(), cas) {
            Ok(()) => return true,
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::key_hash::digest_key;
    use crate::host::FakeHost;

    fn limits(per_minute: Option<u64>, concurrent: Option<u64>) -> Limits {
        Limits {
            per_minute,
            per_hour: None,
            per_day: None,
            concurrent,
        }
    }

    #[test]
    fn nothing_counts_before_slots_exist() {
        let host = FakeHost::at(1_000);
        let windows = Windows::default();
        assert_eq!(
            admit(
                &host,
                1,
                0,
                &limits(Some(1), None),
                &windows,
                slot_count(&host),
                1_000
            ),
            Admission::NoSlot
        );
        assert_eq!(ensure_slots(&host, 8).unwrap(), 8);
        assert_eq!(ensure_slots(&host, 4).unwrap(), 8);
        assert_eq!(slot_count(&host), 8);
        assert_eq!(host.entry_count(), 9);
    }

    #[test]
    fn counts_survive_cas_conflicts_and_hold_the_limit() {
        let host = FakeHost::at(1_000);
        let windows = Windows::default();
        ensure_slots(&host, 16).unwrap();
        let (owner, seed) = owner_and_seed(&digest_key("pk_live_a"));
        let three = limits(Some(3), None);
        let mut admitted = 0;
        for i in 0..10 {
            host.fail_next_cas.set(i % 3);
            if matches!(
                admit(&host, owner, seed, &three, &windows, 16, 1_000),
                Admission::Admitted { .. }
            ) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 3);
    }

    #[test]
    fn endless_contention_refuses_rather_than_over_admits() {
        let host = FakeHost::at(1_000);
        let windows = Windows::default();
        ensure_slots(&host, 4).unwrap();
        let three = limits(Some(3), None);
        assert!(matches!(
            admit(&host, 7, 0, &three, &windows, 4, 1_000),
            Admission::Admitted { .. }
        ));
        host.fail_next_cas.set(u32::MAX);
        assert_eq!(
            admit(&host, 7, 0, &three, &windows, 4, 1_000),
            Admission::Contended
        );
    }

    #[test]
    fn busy_slots_are_probed_and_idle_ones_reused() {
        let host = FakeHost::at(1_000);
        let windows = Windows::default();
        ensure_slots(&host, 2).unwrap();
        let one = limits(Some(1), None);
        let slot_of = |admission: Admission| match admission {
            Admission::Admitted { slot, .. } => slot,
            other => panic!("{other:?}"),
        };
        assert_eq!(slot_of(admit(&host, 1, 0, &one, &windows, 2, 1_000)), 0);
        assert_eq!(slot_of(admit(&host, 2, 0, &one, &windows, 2, 1_000)), 1);
        assert_eq!(
            admit(&host, 3, 0, &one, &windows, 2, 1_000),
            Admission::NoSlot
        );
        // Key 1 was counted; its own slot still refuses it.
        assert!(matches!(
            admit(&host, 1, 0, &one, &windows, 2, 1_000),
            Admission::Refused { .. }
        ));
        // Once key 1's minute has passed, key 3 can take its slot.
        assert_eq!(slot_of(admit(&host, 3, 0, &one, &windows, 2, 70_000)), 0);
        // Key 2 keeps its slot 1 even though slot 0 came first in its probe order.
        assert_eq!(slot_of(admit(&host, 2, 0, &one, &windows, 2, 140_000)), 1);
    }

    #[test]
    fn remote_counts_land_in_the_keys_slot_and_hold_it_to_the_fleet_limit() {
        let host = FakeHost::at(1_000);
        let windows = Windows::default();
        ensure_slots(&host, 8).unwrap();
        let key = owner_and_seed(&digest_key("pk_live_fleet"));
        let six = limits(Some(6), None);
        // The rest of the fleet admitted 4 in this bucket; this Envoy never saw the key.
        let bucket = 1_000 / 2_000;
        assert!(set_remote(
            &host,
            key,
            &[vec![(bucket, 4)], vec![], vec![]],
            &windows,
            8,
            1_000
        ));
        let admitted = (0..5)
            .filter(|_| {
                matches!(
                    admit(&host, key.0, key.1, &six, &windows, 8, 1_000),
                    Admission::Admitted { .. }
                )
            })
            .count();
        assert_eq!(admitted, 2, "6 minus the fleet's 4");
        let Some(Admission::Refused {
            refusal: Refusal::Rate { by_fleet, .. },
            usage,
        }) = Some(admit(&host, key.0, key.1, &six, &windows, 8, 1_000))
        else {
            panic!()
        };
        assert!(by_fleet, "alone, this Envoy has admitted 2 of 6");
        assert_eq!(usage.windows[0].2, 0, "remaining is fleet-wide");
        // The slot names the key and its limits for the next sync.
        let slot = (0..8).find_map(|i| read_slot(&host, i)).unwrap();
        assert_eq!((slot.owner, slot.seed), key);
        assert_eq!(slot.limits, [6, 0, 0]);
        assert_eq!(slot.local_buckets(&windows, 1_000)[0], vec![(bucket, 2)]);
    }

    #[test]
    fn in_flight_is_released_once() {
        let host = FakeHost::at(1_000);
        let windows = Windows::default();
        ensure_slots(&host, 4).unwrap();
        let one_at_a_time = limits(None, Some(1));
        let Admission::Admitted {
            slot,
            in_flight: Some(bucket),
            ..
        } = admit(&host, 5, 1, &one_at_a_time, &windows, 4, 1_000)
        else {
            panic!()
        };
        assert!(matches!(
            admit(&host, 5, 1, &one_at_a_time, &windows, 4, 1_000),
            Admission::Refused {
                refusal: Refusal::Concurrency,
                ..
            }
        ));
        assert!(release(&host, slot, 5, bucket, &windows, 1_000));
        assert!(
            !release(&host, slot, 5, bucket, &windows, 1_000),
            "never below zero"
        );
        assert!(
            !release(&host, slot, 6, bucket, &windows, 1_000),
            "only the owner's count"
        );
        assert!(matches!(
            admit(&host, 5, 1, &one_at_a_time, &windows, 4, 1_000),
            Admission::Admitted { .. }
        ));
    }

    #[test]
    fn a_lost_on_log_frees_the_place_after_the_expiry() {
        let host = FakeHost::at(1_000);
        let windows = Windows {
            in_flight_expiry_ms: 7_000,
            ..Windows::default()
        };
        ensure_slots(&host, 4).unwrap();
        let one_at_a_time = limits(None, Some(1));
        // Admitted, and then the VM that would have released it is gone.
        assert!(matches!(
            admit(&host, 5, 1, &one_at_a_time, &windows, 4, 1_000),
            Admission::Admitted {
                in_flight: Some(_),
                ..
            }
        ));
        assert!(matches!(
            admit(&host, 5, 1, &one_at_a_time, &windows, 4, 7_999),
            Admission::Refused {
                refusal: Refusal::Concurrency,
                ..
            }
        ));
        assert!(matches!(
            admit(&host, 5, 1, &one_at_a_time, &windows, 4, 9_001),
            Admission::Admitted { .. }
        ));
    }
}
