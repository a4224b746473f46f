//! Counter slots in a `FakeHost`: creation and growth, contention, probing, remote counts,
//! in-flight places and their expiry.

use super::*;
use crate::host::FakeHost;
use crate::limits::table::{Table, TABLE_MARKER};
use keygate_contract::key_hash::digest_key;

fn limits(per_minute: Option<u64>, concurrent: Option<u64>) -> Limits {
    Limits {
        per_minute,
        per_hour: None,
        per_day: None,
        concurrent,
    }
}

fn key(name: &str) -> KeyTag {
    owner_and_seed(&digest_key(name))
}

/// `admit` of one request (nothing counted ahead, nothing given back).
fn count_one(
    host: &FakeHost,
    key: KeyTag,
    limits: &Limits,
    windows: &Windows,
    capacity: u64,
    now_ms: u64,
) -> Admission {
    admit(host, key, limits, windows, capacity, now_ms, Ahead::ONE)
}

fn slot_of(admission: Admission) -> u64 {
    match admission {
        Admission::Admitted { slot, .. } => slot,
        other => panic!("{other:?}"),
    }
}

/// Slots holding `key`'s counts.
fn holders(host: &FakeHost, key: KeyTag) -> Vec<u64> {
    (0..slot_count(host))
        .filter(|&i| read_slot(host, i).is_some_and(|s| (s.owner, s.seed) == key))
        .collect()
}

#[test]
fn no_limited_keys_no_table_and_nothing_counts_before_one_exists() {
    let host = FakeHost::at(1_000);
    let windows = Windows::default();
    assert_eq!(
        grow(&host, wanted_capacity(0), 1 << 20, 1_000)
            .unwrap()
            .capacity,
        0
    );
    assert_eq!(host.entry_count(), 0, "not even the marker");
    let one = limits(Some(1), None);
    let capacity = slot_count(&host);
    assert_eq!(
        count_one(&host, key("a"), &one, &windows, capacity, 1_000),
        Admission::NoSlot
    );
    assert_eq!(host.entry_count(), 0, "a request never creates an entry");
}

#[test]
fn a_growth_never_blanks_a_slot_that_already_exists() {
    // A holder whose lease lapsed reads the old capacity, while the next holder has already
    // grown the table and a key counts in one of the new slots.
    let host = FakeHost::at(0);
    let windows = Windows::default();
    grow(&host, 1_024, 1 << 20, 0).unwrap();
    let capacity = grow(&host, 4_096, 1 << 20, 0).unwrap().capacity;
    let tag = (9, 3_000);
    let slot = slot_of(count_one(
        &host,
        tag,
        &limits(Some(5), None),
        &windows,
        capacity,
        0,
    ));
    assert!(slot >= 1_024);
    host.set_shared(
        TABLE_MARKER,
        &Table {
            capacity: 1_024,
            ..Table::default()
        }
        .encode(),
        None,
    )
    .unwrap();
    grow(&host, 4_096, 1 << 20, 0).unwrap();
    assert!(read_slot(&host, slot).is_some(), "the count survives");
}

#[test]
fn two_workers_creating_one_slot_lose_no_count() {
    let host = FakeHost::at(1_000);
    let capacity = grow(&host, wanted_capacity(1), 1 << 20, 0)
        .unwrap()
        .capacity;
    let tag = key("racer");
    // Worker A found no slot for the key and is about to take the creation lock when
    // worker B counts the key's first request (creating the slot).
    host.interleave("keygate.rl.lock.", move |host| {
        let b = count_one(
            host,
            tag,
            &limits(Some(2), None),
            &Windows::default(),
            capacity,
            1_000,
        );
        assert!(matches!(b, Admission::Admitted { .. }), "{b:?}");
    });
    let windows = Windows::default();
    let two = limits(Some(2), None);
    let a = count_one(&host, tag, &two, &windows, capacity, 1_000);
    assert!(matches!(a, Admission::Admitted { .. }), "{a:?}");
    assert_eq!(holders(&host, tag).len(), 1);
    // Both first requests were counted: the third is over the limit of 2.
    let c = count_one(&host, tag, &two, &windows, capacity, 1_000);
    assert!(matches!(c, Admission::Refused { .. }), "{c:?}");
    assert_eq!(host.entry_count(), 2 + CREATION_LOCKS as usize);
}

#[test]
fn a_held_creation_lock_is_waited_for_and_a_stale_one_taken_over() {
    let host = FakeHost::at(10_000);
    let capacity = grow(&host, wanted_capacity(1), 1 << 20, 0)
        .unwrap()
        .capacity;
    let hold = |at: u64| {
        for index in 0..CREATION_LOCKS {
            let mut held = vec![1u8];
            held.extend_from_slice(&at.to_le_bytes());
            host.set_shared(&lock_name(index), &held, None).unwrap();
        }
    };
    let one = limits(Some(1), None);
    let windows = Windows::default();
    // Held just now by a worker that never gives it back within the wait: contended.
    hold(10_000);
    assert_eq!(
        count_one(&host, key("a"), &one, &windows, capacity, 10_000),
        Admission::Contended
    );
    // Held for longer than any holder can be between its two calls: taken over.
    hold(10_000 - LOCK_STALE_MS - 1);
    let admitted = count_one(&host, key("a"), &one, &windows, capacity, 10_000);
    assert!(
        matches!(admitted, Admission::Admitted { .. }),
        "{admitted:?}"
    );
}

#[test]
fn a_full_table_of_active_keys_counts_every_one() {
    // The load wanted_capacity allows: every limited key active at once, none uncounted,
    // each in exactly one slot.
    let host = FakeHost::at(1_000);
    let windows = Windows::default();
    let keys = 20_000;
    let capacity = grow(&host, wanted_capacity(keys), 1 << 24, 0)
        .unwrap()
        .capacity;
    let one = limits(Some(1), None);
    for i in 0..keys {
        let tag = key(&format!("pk_live_{i}"));
        assert!(
            matches!(
                count_one(&host, tag, &one, &windows, capacity, 1_000),
                Admission::Admitted { .. }
            ),
            "key {i}"
        );
    }
    for i in (0..keys).step_by(97) {
        let tag = key(&format!("pk_live_{i}"));
        assert!(matches!(
            count_one(&host, tag, &one, &windows, capacity, 1_000),
            Admission::Refused { .. }
        ));
        assert_eq!(holders(&host, tag).len(), 1);
    }
}

#[test]
fn counts_survive_cas_conflicts_and_hold_the_limit() {
    let host = FakeHost::at(1_000);
    let windows = Windows::default();
    grow(&host, 16, 16, 0).unwrap();
    let three = limits(Some(3), None);
    let mut admitted = 0;
    for i in 0..10 {
        host.fail_next_cas.set(i % 3);
        if matches!(
            count_one(&host, key("pk_live_a"), &three, &windows, 16, 1_000),
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
    grow(&host, 4, 4, 0).unwrap();
    let three = limits(Some(3), None);
    assert!(matches!(
        count_one(&host, (7, 0), &three, &windows, 4, 1_000),
        Admission::Admitted { .. }
    ));
    host.fail_next_cas.set(u32::MAX);
    assert_eq!(
        count_one(&host, (7, 0), &three, &windows, 4, 1_000),
        Admission::Contended
    );
}

#[test]
fn busy_slots_are_probed_and_idle_ones_reused() {
    let host = FakeHost::at(1_000);
    let windows = Windows::default();
    grow(&host, 1, 1, 0).unwrap();
    let one = limits(Some(1), None);
    assert_eq!(
        slot_of(count_one(&host, (1, 5), &one, &windows, 1, 1_000)),
        0
    );
    assert_eq!(
        count_one(&host, (2, 5), &one, &windows, 1, 1_000),
        Admission::NoSlot
    );
    // Key 1 was counted; its own slot still refuses it.
    assert!(matches!(
        count_one(&host, (1, 5), &one, &windows, 1, 1_000),
        Admission::Refused { .. }
    ));
    // Once key 1's minute has passed, key 2 can take its slot.
    assert_eq!(
        slot_of(count_one(&host, (2, 5), &one, &windows, 1, 70_000)),
        0
    );
    assert_eq!(
        count_one(&host, (1, 5), &one, &windows, 1, 70_000),
        Admission::NoSlot
    );
}

#[test]
fn a_key_keeps_its_slot_when_an_earlier_position_frees_up() {
    let host = FakeHost::at(1_000);
    let windows = Windows::default();
    grow(&host, 1_024, 1_024, 0).unwrap();
    let seed = 77;
    let first = position(seed, 0, 1_024);
    let five = limits(Some(5), None);
    // Another key holds the first position, so this one goes further along.
    assert_eq!(
        slot_of(count_one(&host, (1, seed), &five, &windows, 1_024, 1_000)),
        first
    );
    let later = slot_of(count_one(&host, (2, seed), &five, &windows, 1_024, 1_000));
    assert_ne!(later, first);
    // Key 1 goes idle; key 2 keeps counting where it is and is held to its limit.
    for t in 70_000..70_005 {
        assert_eq!(
            slot_of(count_one(&host, (2, seed), &five, &windows, 1_024, t)),
            later
        );
    }
    assert!(matches!(
        count_one(&host, (2, seed), &five, &windows, 1_024, 70_005),
        Admission::Refused { .. }
    ));
}

#[test]
fn growth_moves_a_keys_counts_without_losing_or_doubling_them() {
    let host = FakeHost::at(1_000);
    let windows = Windows::default();
    grow(&host, 1_024, 1 << 20, 0).unwrap();
    let tag = key("pk_live_moving");
    let five = limits(Some(5), Some(10));
    let first = count_one(&host, tag, &five, &windows, 1_024, 1_000);
    let Admission::Admitted {
        slot: old_slot,
        in_flight: Some(bucket),
        ..
    } = first
    else {
        panic!("{first:?}")
    };
    assert!(matches!(
        count_one(&host, tag, &five, &windows, 1_024, 1_000),
        Admission::Admitted { .. }
    ));
    grow(&host, 100_000, 1 << 20, 1_500).unwrap();
    // A worker that has not seen the growth yet still counts in place ...
    assert_eq!(
        slot_of(count_one(&host, tag, &five, &windows, 1_024, 2_000)),
        old_slot
    );
    // ... and the first worker that has moves the key: 3 counted, 2 more fit.
    let capacity = slot_count(&host);
    let new_slot = slot_of(count_one(&host, tag, &five, &windows, capacity, 2_000));
    assert_eq!(holders(&host, tag), vec![new_slot]);
    assert_eq!(
        host.get_shared(SlotName::new(old_slot).as_str()).0,
        Some(FREED.to_vec())
    );
    // The stale worker finds it where the others do.
    assert!(matches!(
        count_one(&host, tag, &five, &windows, 1_024, 2_000),
        Admission::Admitted { .. }
    ));
    assert!(matches!(
        count_one(&host, tag, &five, &windows, capacity, 2_000),
        Admission::Refused { .. }
    ));
    // The in-flight place taken before the move is given back in the new slot.
    let state = read_slot(&host, new_slot).unwrap();
    assert_eq!(state.in_flight(&windows, 2_000), 5);
    assert!(release(&host, old_slot, tag, bucket, &windows, 2_000));
    assert_eq!(
        read_slot(&host, new_slot)
            .unwrap()
            .in_flight(&windows, 2_000),
        4
    );
}

#[test]
fn a_refused_request_still_moves_the_keys_counts() {
    let host = FakeHost::at(1_000);
    let windows = Windows::default();
    grow(&host, 1_024, 1 << 20, 0).unwrap();
    let tag = key("pk_live_full");
    let two = limits(Some(2), None);
    let old_slot = slot_of(count_one(&host, tag, &two, &windows, 1_024, 1_000));
    slot_of(count_one(&host, tag, &two, &windows, 1_024, 1_000));
    let capacity = grow(&host, 100_000, 1 << 20, 1_000).unwrap().capacity;
    assert!(matches!(
        count_one(&host, tag, &two, &windows, capacity, 1_500),
        Admission::Refused { .. }
    ));
    let moved = holders(&host, tag);
    assert_eq!(moved.len(), 1);
    assert_ne!(moved, vec![old_slot]);
    assert_eq!(
        read_slot(&host, moved[0])
            .unwrap()
            .local_buckets(&windows, 1_500)[0],
        vec![(0, 2)]
    );
}

#[test]
fn the_previous_capacity_is_forgotten_once_no_count_can_be_left_there() {
    let host = FakeHost::at(0);
    let windows = Windows::default();
    grow(&host, 1_024, 1 << 20, 0).unwrap();
    let tag = key("pk_live_old");
    let one = limits(Some(1), None);
    let old_slot = slot_of(count_one(&host, tag, &one, &windows, 1_024, 0));
    grow(&host, 4_096, 1 << 20, 0).unwrap();
    let later = windows.longest_memory_ms();
    assert!(read_table(&host)
        .previous_in_use(&windows, later - 1)
        .is_some());
    assert_eq!(read_table(&host).previous_in_use(&windows, later), None);
    // The old count has expired by then: the key is counted afresh, in one slot.
    let new_slot = slot_of(count_one(&host, tag, &one, &windows, 4_096, later));
    assert_eq!(holders(&host, tag), vec![new_slot]);
    assert!(new_slot == old_slot || read_slot(&host, old_slot).is_some());
}

#[test]
fn remote_counts_land_in_the_keys_slot_and_hold_it_to_the_fleet_limit() {
    let host = FakeHost::at(1_000);
    let windows = Windows::default();
    grow(&host, 8, 8, 0).unwrap();
    let tag = key("pk_live_fleet");
    let six = limits(Some(6), None);
    // The rest of the fleet admitted 4 in this bucket; this Envoy never saw the key.
    let bucket = 1_000 / 2_000;
    assert!(set_remote(
        &host,
        tag,
        &[vec![(bucket, 4)], vec![], vec![]],
        &windows,
        8,
        1_000
    ));
    let admitted = (0..5)
        .filter(|_| {
            matches!(
                count_one(&host, tag, &six, &windows, 8, 1_000),
                Admission::Admitted { .. }
            )
        })
        .count();
    assert_eq!(admitted, 2, "6 minus the fleet's 4");
    let Admission::Refused {
        refusal: Refusal::Rate { by_fleet, .. },
        usage,
    } = count_one(&host, tag, &six, &windows, 8, 1_000)
    else {
        panic!()
    };
    assert!(by_fleet, "alone, this Envoy has admitted 2 of 6");
    assert_eq!(usage.windows[0].map(|w| w.remaining), Some(0));
    // The slot names the key and its limits for the next sync.
    let slot = (0..8).find_map(|i| read_slot(&host, i)).unwrap();
    assert_eq!((slot.owner, slot.seed), tag);
    assert_eq!(slot.limits, [6, 0, 0]);
    assert_eq!(slot.local_buckets(&windows, 1_000)[0], vec![(bucket, 2)]);
}

#[test]
fn in_flight_is_released_once() {
    let host = FakeHost::at(1_000);
    let windows = Windows::default();
    grow(&host, 4, 4, 0).unwrap();
    let one_at_a_time = limits(None, Some(1));
    let admit_one = || count_one(&host, (5, 1), &one_at_a_time, &windows, 4, 1_000);
    let Admission::Admitted {
        slot,
        in_flight: Some(bucket),
        ..
    } = admit_one()
    else {
        panic!()
    };
    assert!(matches!(
        admit_one(),
        Admission::Refused {
            refusal: Refusal::Concurrency,
            ..
        }
    ));
    assert!(release(&host, slot, (5, 1), bucket, &windows, 1_000));
    assert!(
        !release(&host, slot, (5, 1), bucket, &windows, 1_000),
        "never below zero"
    );
    assert!(
        !release(&host, slot, (6, 1), bucket, &windows, 1_000),
        "only the owner's count"
    );
    assert!(matches!(admit_one(), Admission::Admitted { .. }));
}

#[test]
fn a_lost_on_log_frees_the_place_after_the_expiry() {
    let host = FakeHost::at(1_000);
    let windows = Windows {
        in_flight_expiry_ms: 7_000,
        ..Windows::default()
    };
    grow(&host, 4, 4, 0).unwrap();
    let one_at_a_time = limits(None, Some(1));
    // Admitted, and then the VM that would have released it is gone.
    assert!(matches!(
        count_one(&host, (5, 1), &one_at_a_time, &windows, 4, 1_000),
        Admission::Admitted {
            in_flight: Some(_),
            ..
        }
    ));
    assert!(matches!(
        count_one(&host, (5, 1), &one_at_a_time, &windows, 4, 7_999),
        Admission::Refused {
            refusal: Refusal::Concurrency,
            ..
        }
    ));
    assert!(matches!(
        count_one(&host, (5, 1), &one_at_a_time, &windows, 4, 9_001),
        Admission::Admitted { .. }
    ));
}
