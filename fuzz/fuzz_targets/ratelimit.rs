//! `slot_codec::decode/encode` and `ratelimit::admit`.
//!
//! Invariants: decoding never panics and a decoded state re-encodes to the same bytes; `admit`
//! with arbitrary limits, windows, states and times never panics and never reports remaining >
//! limit. From an empty slot with time moving forward: no interval of a window's length ever
//! admits more than that window's limit (a grant of requests counted ahead, `credits.rs`,
//! counts as that many admitted when it is counted, and requests of it given back unused as
//! never admitted), the in-flight count stays within the concurrency limit,
//! and a request sent `Retry-After` later is admitted.
#![no_main]

use keygate::limits::slot_codec::{decode, encode, MAX_LEN};
use keygate::limits::window::{admit, GiveBack, Refusal, SlotState, Windows};
use keygate_contract::snapshot::Limits;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fn limit(u: &mut Unstructured) -> Result<Option<u64>> {
    Ok(match u.arbitrary::<u8>()? {
        0..=63 => None,
        64..=239 => Some(u.int_in_range(0..=12)?),
        _ => Some(u.arbitrary()?),
    })
}

fn run(u: &mut Unstructured) -> Result<()> {
    // The ranges `Config` accepts for each window, in milliseconds.
    let windows = Windows {
        lengths_ms: [
            u.int_in_range(1_000..=60_000)?,
            u.int_in_range(1_000..=3_600_000)?,
            u.int_in_range(1_000..=86_400_000)?,
        ],
        in_flight_expiry_ms: u.int_in_range(1_000..=86_400_000)?,
    };
    let limits = Limits {
        per_minute: limit(u)?,
        per_hour: limit(u)?,
        per_day: limit(u)?,
        concurrent: limit(u)?,
    };
    let limited = [limits.per_minute, limits.per_hour, limits.per_day];
    let arbitrary_state = u.ratio(1, 4)?;
    let mut state = if arbitrary_state {
        let len = u.int_in_range(0..=MAX_LEN)?;
        decode(u.bytes(len)?).unwrap_or_else(|| SlotState::empty(1))
    } else {
        SlotState::empty(1)
    };
    let mut now: u64 = if arbitrary_state { u.arbitrary()? } else { u.int_in_range(0..=1 << 45)? };
    let mut admitted = Vec::new();
    let mut last_retry_after = 0;
    // The last grant of more than one: when, how many, in which buckets.
    let mut last_grant: Option<(u64, u64, [u64; 3])> = None;
    for _ in 0..u.int_in_range(1..=100)? {
        match u.arbitrary::<u8>()? {
            24..=31 if last_grant.is_some() => {
                // Credits of the last grant given back unused, at most once.
                let Some((at, granted, buckets)) = last_grant.take() else { continue };
                let count = u.int_in_range(1..=granted - 1)?;
                let limited_windows = limited.map(|limit| limit.is_some());
                let back = GiveBack { count, buckets, limited: limited_windows };
                state.give_back(&back, &windows, now);
                for _ in 0..count {
                    if let Some(position) = admitted.iter().rposition(|&t| t == at) {
                        admitted.remove(position);
                    }
                }
            }
            0..=31 => {
                let bucket = windows.in_flight_bucket(now.saturating_sub(u.int_in_range(0..=100_000)?));
                let _ = state.release(&windows, bucket, now);
            }
            32..=47 if arbitrary_state => now = u.arbitrary()?,
            op => {
                now = now.saturating_add(match op {
                    // A well-behaved client: back exactly when told.
                    48..=79 => std::mem::take(&mut last_retry_after),
                    80..=127 => 0,
                    128..=223 => u.int_in_range(0..=5_000)?,
                    _ => u.int_in_range(0..=100_000_000)?,
                });
                let before = state;
                let want = if u.ratio(1, 2)? { 1 } else { u.int_in_range(1..=64)? };
                let (outcome, usage) = admit(&mut state, &limits, &windows, now, want);
                for (window, reported) in usage.windows.iter().enumerate() {
                    assert_eq!(reported.map(|w| w.limit), limited[window]);
                    if let Some(w) = reported {
                        assert!(w.remaining <= w.limit, "remaining {} > limit {}", w.remaining, w.limit);
                    }
                }
                let _ = keygate::limits::headers::headers(&usage, &windows);
                match outcome {
                    Ok(granted) => {
                        assert!((1..=want).contains(&granted), "granted {granted} of {want}");
                        if limits.concurrent.is_some() {
                            assert_eq!(granted, 1, "no grant with a concurrency limit");
                        }
                        admitted.extend(std::iter::repeat(now).take(granted as usize));
                        if granted > 1 {
                            last_grant = Some((now, granted, windows.buckets_at(now)));
                        }
                    }
                    Err(Refusal::Rate { retry_after_ms, .. }) => {
                        assert!(retry_after_ms > 0);
                        last_retry_after = retry_after_ms;
                        if !arbitrary_state && limited.iter().all(|l| l.map_or(true, |l| l > 0)) {
                            // Windows only: in-flight places are not what Retry-After is about.
                            let mut later = before;
                            let windows_only = Limits { concurrent: None, ..limits.clone() };
                            let (retry, _) = admit(&mut later, &windows_only, &windows, now + retry_after_ms, 1);
                            assert_eq!(retry, Ok(1), "refused again at Retry-After ({retry_after_ms} ms)");
                        }
                    }
                    Err(Refusal::Concurrency) => {
                        assert!(limits.concurrent.is_some());
                    }
                }
                if let (false, Some(max)) = (arbitrary_state, limits.concurrent) {
                    assert!(state.in_flight(&windows, now) <= max);
                }
            }
        }
        let encoded = encode(&state);
        assert!(encoded.as_bytes().len() <= MAX_LEN);
        assert_eq!(decode(encoded.as_bytes()), Some(state));
    }
    if !arbitrary_state {
        for (window, limit) in limited.iter().enumerate() {
            let Some(limit) = *limit else { continue };
            let length = windows.lengths_ms[window];
            for (i, &start) in admitted.iter().enumerate() {
                let within = admitted[i..].iter().take_while(|&&t| t < start + length).count() as u64;
                assert!(
                    within <= limit,
                    "{within} admitted within {length} ms from {start} (limit {limit}, window {window})"
                );
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    if let Some(state) = decode(data) {
        assert_eq!(encode(&state).as_bytes(), data);
    }
    let _ = run(&mut Unstructured::new(data));
});
