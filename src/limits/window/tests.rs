//! The window maths, case by case: bursts, sliding limits, `Retry-After`, remote counts,
//! in-flight places, a slot's bytes.

use super::*;
use crate::limits::slot_codec::{decode, encode};

fn limits(per_minute: Option<u64>, per_day: Option<u64>, concurrent: Option<u64>) -> Limits {
    Limits {
        per_minute,
        per_hour: None,
        per_day,
        concurrent,
    }
}

fn count_admitted(
    state: &mut SlotState,
    limits: &Limits,
    windows: &Windows,
    times_ms: impl Iterator<Item = u64>,
) -> usize {
    times_ms
        .filter(|&t| admit(state, limits, windows, t, 1).0.is_ok())
        .count()
}

#[test]
fn admits_exactly_the_limit_in_a_burst() {
    let windows = Windows::default();
    let mut state = SlotState::empty(1);
    let five = limits(Some(5), None, None);
    assert_eq!(
        count_admitted(
            &mut state,
            &five,
            &windows,
            std::iter::repeat_n(1_000_000, 20)
        ),
        5
    );
}

#[test]
fn no_window_of_the_limits_length_ever_admits_more_than_the_limit() {
    // Requests every 500 ms for ten minutes against 10/minute: check every sliding
    // 60 s interval of admitted requests.
    let windows = Windows::default();
    let mut state = SlotState::empty(1);
    let ten = limits(Some(10), None, None);
    let start = 7_777_777;
    let admitted: Vec<u64> = (0..1200)
        .map(|i| start + i * 500)
        .filter(|&t| admit(&mut state, &ten, &windows, t, 1).0.is_ok())
        .collect();
    for (i, &t) in admitted.iter().enumerate() {
        let in_window = admitted[i..]
            .iter()
            .take_while(|&&u| u < t + 60_000)
            .count();
        assert!(
            in_window <= 10,
            "{in_window} admitted in the minute from {t}"
        );
    }
    // And it does not starve: roughly the limit per minute over ten minutes.
    assert!(admitted.len() >= 90, "{}", admitted.len());
}

#[test]
fn retry_after_is_exact() {
    let windows = Windows::default();
    let mut state = SlotState::empty(1);
    let three = limits(Some(3), None, None);
    let now = 100_000; // bucket boundary (2 s buckets)
    for offset in [0, 1_000, 2_500] {
        assert!(admit(&mut state, &three, &windows, now + offset, 1)
            .0
            .is_ok());
    }
    let (refused, usage) = admit(&mut state, &three, &windows, now + 3_000, 1);
    let Err(Refusal::Rate { retry_after_ms, .. }) = refused else {
        panic!("{refused:?}")
    };
    // The two oldest requests' bucket (index 50, [100 s, 102 s)) leaves the 31-bucket ring
    // when the bucket index reaches 81 → at 162 s.
    assert_eq!(now + 3_000 + retry_after_ms, 162_000);
    assert_eq!(
        usage.windows,
        [
            Some(WindowUsage {
                limit: 3,
                remaining: 0,
                reset_ms: retry_after_ms
            }),
            None,
            None
        ]
    );
    assert!(admit(&mut state, &three, &windows, 162_000 - 1, 1)
        .0
        .is_err());
    assert!(admit(&mut state, &three, &windows, 162_000, 1).0.is_ok());
}

#[test]
fn tightest_of_several_windows_wins_and_retry_is_the_longest_wait() {
    let windows = Windows::default();
    let mut state = SlotState::empty(1);
    let both = limits(Some(100), Some(2), None);
    assert!(admit(&mut state, &both, &windows, 0, 1).0.is_ok());
    let (ok, usage) = admit(&mut state, &both, &windows, 1_000, 1);
    assert!(ok.is_ok());
    let headers = crate::limits::headers::headers(&usage, &windows);
    assert!(headers.contains(&("x-ratelimit-limit", "2".into())));
    assert!(headers.contains(&("x-ratelimit-remaining", "0".into())));
    assert!(headers.contains(&(
        "ratelimit-policy",
        "\"minute\";q=100;w=60, \"day\";q=2;w=86400".into()
    )));
    let (refused, _) = admit(&mut state, &both, &windows, 2_000, 1);
    let Err(Refusal::Rate { retry_after_ms, .. }) = refused else {
        panic!()
    };
    assert!(retry_after_ms > 23 * 3_600_000, "{retry_after_ms}");
}

#[test]
fn remote_counts_add_to_local_ones_and_age_out_with_their_buckets() {
    let windows = Windows::default();
    let mut state = SlotState::for_key(1, 2);
    let ten = limits(Some(10), None, None);
    let now = 100_000;
    state.set_remote(0, &[(now / 2_000, 7), (now / 2_000 - 3, 1)], &windows, now);
    assert_eq!(state.remote_totals(&windows, now), [8, 0, 0]);
    assert_eq!(
        count_admitted(&mut state, &ten, &windows, std::iter::repeat_n(now, 5)),
        2
    );
    let (refused, _) = admit(&mut state, &ten, &windows, now, 1);
    assert!(matches!(refused, Err(Refusal::Rate { by_fleet: true, .. })));
    // A sync replaces the remote picture: the fleet's count moved to 3.
    state.set_remote(0, &[(now / 2_000, 3)], &windows, now);
    assert_eq!(
        count_admitted(&mut state, &ten, &windows, std::iter::repeat_n(now, 9)),
        5
    );
    // A minute and a bucket later everything has aged out, remote included.
    let later = now + 62_000;
    assert_eq!(state.remote_totals(&windows, later), [0, 0, 0]);
    assert!(state.idle(&windows, later));
    // Buckets the ring does not hold are dropped, one ahead counts as now.
    state.set_remote(
        0,
        &[(0, 50), (later / 2_000 + 1, 2), (later / 2_000 + 9, 50)],
        &windows,
        later,
    );
    assert_eq!(state.remote_totals(&windows, later), [2, 0, 0]);
    assert!(!state.idle(&windows, later), "remote counts keep the slot");
}

#[test]
fn a_slot_round_trips_with_its_tag_limits_and_remote_counts() {
    let windows = Windows::default();
    let mut state = SlotState::for_key(11, 22);
    assert!(admit(
        &mut state,
        &limits(Some(5), Some(9), None),
        &windows,
        4_000,
        1
    )
    .0
    .is_ok());
    state.set_remote(1, &[(4_000 / 120_000, 3)], &windows, 4_000);
    let decoded = decode(encode(&state).as_bytes()).unwrap();
    assert_eq!(decoded, state);
    assert_eq!(decoded.limits, [5, 0, 9]);
    assert_eq!(
        decoded.local_buckets(&windows, 4_000),
        [vec![(2, 1)], vec![], vec![(0, 1)]]
    );
    assert!(decode(&encode(&state).as_bytes()[1..]).is_none());
}

#[test]
fn concurrency_counts_in_flight() {
    let windows = Windows::default();
    let mut state = SlotState::empty(1);
    let two = limits(None, None, Some(2));
    assert!(admit(&mut state, &two, &windows, 0, 1).0.is_ok());
    assert!(admit(&mut state, &two, &windows, 0, 1).0.is_ok());
    assert_eq!(
        admit(&mut state, &two, &windows, 0, 1).0,
        Err(Refusal::Concurrency)
    );
    assert!(state.release(&windows, windows.in_flight_bucket(0), 0));
    assert!(admit(&mut state, &two, &windows, 0, 1).0.is_ok());
    assert!(!state.idle(&windows, 0));
}

#[test]
fn in_flight_places_whose_end_is_never_seen_expire() {
    let windows = Windows {
        in_flight_expiry_ms: 70_000,
        ..Windows::default()
    };
    let one = limits(None, None, Some(1));
    let mut state = SlotState::empty(1);
    let taken_at = 1_000_000;
    assert!(admit(&mut state, &one, &windows, taken_at, 1).0.is_ok());
    // The request's end is lost: the key is refused until the place expires ...
    for later in [taken_at, taken_at + 30_000, taken_at + 69_999] {
        assert_eq!(
            admit(&mut state, &one, &windows, later, 1).0,
            Err(Refusal::Concurrency),
            "{later}"
        );
        assert_eq!(state.in_flight(&windows, later), 1);
    }
    // ... and no longer than the expiry plus one bucket (10 s here).
    assert!(admit(&mut state, &one, &windows, taken_at + 80_000, 1)
        .0
        .is_ok());
    // A late release of the expired place does not free the new one.
    let expired_bucket = windows.in_flight_bucket(taken_at);
    assert!(!state.release(&windows, expired_bucket, taken_at + 80_001));
    assert_eq!(state.in_flight(&windows, taken_at + 80_001), 1);
    assert!(state.release(
        &windows,
        windows.in_flight_bucket(taken_at + 80_000),
        taken_at + 80_001
    ));
    assert!(state.idle(&windows, taken_at + 80_001));
}

#[test]
fn state_round_trips_and_rejects_garbage() {
    let windows = Windows::default();
    let mut state = SlotState::empty(0xABCDEF);
    assert!(admit(
        &mut state,
        &limits(Some(5), Some(9), Some(3)),
        &windows,
        123_456_789,
        1
    )
    .0
    .is_ok());
    let encoded = encode(&state);
    let bytes = encoded.as_bytes();
    assert_eq!(decode(bytes), Some(state));
    assert_eq!(decode(&bytes[1..]), None);
    assert_eq!(decode(b""), None);
    assert_eq!(decode(&[0xFF; 64]), None);
}

#[test]
fn idle_after_every_window_has_passed() {
    let windows = Windows::default();
    let mut state = SlotState::empty(1);
    assert!(admit(
        &mut state,
        &limits(Some(5), None, None),
        &windows,
        10_000,
        1
    )
    .0
    .is_ok());
    assert!(!state.idle(&windows, 20_000));
    assert!(state.idle(&windows, 10_000 + 62_001));
}

#[test]
fn windows_not_a_multiple_of_the_buckets_still_hold_the_limit() {
    // Found by fuzz/fuzz_targets/ratelimit.rs: with 10 s / 30 = 333 ms buckets a request
    // was forgotten after 9991 ms, so two got through within 10 s against a limit of 1.
    for length in [10_000, 1_255, 59_999] {
        let windows = Windows {
            lengths_ms: [length, 3_600_000, 86_400_000],
            ..Windows::default()
        };
        let one = limits(Some(1), None, None);
        for first in 1_000_000..1_000_000 + 2 * length / 30 + 2 {
            let mut state = SlotState::empty(1);
            assert!(admit(&mut state, &one, &windows, first, 1).0.is_ok());
            assert!(
                admit(&mut state, &one, &windows, first + length - 1, 1)
                    .0
                    .is_err(),
                "window {length} ms: admitted again {} ms after {first}",
                length - 1
            );
        }
    }
}

#[test]
fn a_slot_with_any_newest_bucket_does_not_overflow() {
    // Found by fuzz/fuzz_targets/ratelimit.rs: `(newest + k + 1) * bucket_ms` overflowed for
    // a slot decoded from arbitrary bytes.
    let windows = Windows::default();
    let mut state = SlotState::empty(1);
    state.rings[0].newest = u64::MAX - 3;
    state.rings[0].set_count(0, 7);
    let mut state = decode(encode(&state).as_bytes()).unwrap();
    let (refused, usage) = admit(&mut state, &limits(Some(1), None, None), &windows, 0, 1);
    assert!(matches!(refused, Err(Refusal::Rate { .. })), "{refused:?}");
    assert_eq!(usage.windows[0].map(|w| w.remaining), Some(0));
}

#[test]
fn short_test_windows_use_the_same_maths() {
    let windows = Windows {
        lengths_ms: [3_000, 3_600_000, 86_400_000],
        ..Windows::default()
    };
    let mut state = SlotState::empty(1);
    let two = limits(Some(2), None, None);
    assert_eq!(
        count_admitted(&mut state, &two, &windows, std::iter::repeat_n(50_000, 5)),
        2
    );
    let (refused, _) = admit(&mut state, &two, &windows, 50_000, 1);
    let Err(Refusal::Rate { retry_after_ms, .. }) = refused else {
        panic!()
    };
    assert!(retry_after_ms <= 3_100, "{retry_after_ms}");
    assert!(
        admit(&mut state, &two, &windows, 50_000 + retry_after_ms, 1)
            .0
            .is_ok()
    );
}

#[test]
fn a_grant_is_counted_whole_and_reported_as_one_request() {
    let windows = Windows::default();
    let mut state = SlotState::empty(1);
    let big = limits(Some(6_400), None, None);
    let (granted, usage) = admit(&mut state, &big, &windows, 0, 10);
    assert_eq!(granted, Ok(10));
    assert_eq!(state.rings[0].total(), 10);
    // The client is told what this one request left; the nine ahead are not used yet.
    assert_eq!(usage.windows[0].map(|u| u.remaining), Some(6_399));
}

#[test]
fn more_than_one_is_granted_only_far_from_every_limit() {
    let windows = Windows::default();
    // At most 1/64 of the limit: a plan of 60 a minute is counted one by one.
    let mut state = SlotState::empty(1);
    let free = limits(Some(60), Some(1_000), None);
    assert_eq!(admit(&mut state, &free, &windows, 0, 64).0, Ok(1));
    // 1/64 of 640 is 10, and the day's 1/64 is lower still.
    let mut state = SlotState::empty(1);
    assert_eq!(
        admit(&mut state, &limits(Some(640), None, None), &windows, 0, 64).0,
        Ok(10)
    );
    let mut state = SlotState::empty(1);
    let day = limits(Some(6_400), Some(320), None);
    assert_eq!(admit(&mut state, &day, &windows, 0, 64).0, Ok(5));
    // Never past half the limit: 3,150 of 6,400 used by the rest of the fleet...
    let mut state = SlotState::empty(1);
    let big = limits(Some(6_400), None, None);
    state.set_remote(0, &[(0, 3_150)], &windows, 0);
    assert_eq!(admit(&mut state, &big, &windows, 0, 64).0, Ok(50));
    // ...and one by one from half on, to the last request the limit admits.
    assert_eq!(admit(&mut state, &big, &windows, 0, 64).0, Ok(1));
    // No grant with a concurrency limit: each request holds its own place.
    let mut state = SlotState::empty(1);
    let concurrent = limits(Some(6_400), None, Some(100));
    assert_eq!(admit(&mut state, &concurrent, &windows, 0, 64).0, Ok(1));
}

#[test]
fn credits_given_back_leave_the_buckets_they_were_counted_in() {
    let windows = Windows::default();
    let mut state = SlotState::empty(1);
    let big = limits(Some(6_400), Some(64_000), None);
    assert_eq!(admit(&mut state, &big, &windows, 1_000, 20).0, Ok(20));
    let back = GiveBack {
        count: 15,
        buckets: windows.buckets_at(1_000),
        limited: [true, false, true],
    };
    // Given back two buckets later, with a new request counted meanwhile.
    assert_eq!(admit(&mut state, &big, &windows, 5_000, 1).0, Ok(1));
    state.give_back(&back, &windows, 5_000);
    assert_eq!(state.rings[0].total(), 6);
    assert_eq!(state.rings[2].total(), 6);
    // More than is there takes nothing below zero.
    state.give_back(&GiveBack { count: 99, ..back }, &windows, 5_000);
    assert_eq!(state.rings[0].total(), 1);
    // A bucket that left the ring, nothing: not the newer one in its ring position.
    let mut state = SlotState::empty(1);
    assert_eq!(admit(&mut state, &big, &windows, 1_000, 20).0, Ok(20));
    assert_eq!(admit(&mut state, &big, &windows, 63_000, 3).0, Ok(3));
    state.give_back(&back, &windows, 63_000);
    assert_eq!(state.rings[0].total(), 3);
}
