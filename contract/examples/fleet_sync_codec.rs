//! What the fleet sync's two encodings cost the control service per sync: the body size of a
//! 1,000-key post in the shape `bench/fleet_sync.py` posts (30 two-second minute buckets, the
//! hour's and the day's bucket per key), and the time to read it (as `control/src/api` does:
//! JSON through `serde_path_to_error`, binary through `fleet::binary`), validate it and write
//! an answer of the same 1,000 keys (every key answered: the most a sync of them can cost).
//!
//! `cargo run --release -p keygate-contract --example fleet_sync_codec`; prints numbers, asserts
//! nothing about time (docs/benchmarks.md, "Fleet rate-limit sync").

use std::hint::black_box;
use std::time::{Duration, Instant};

use keygate_contract::fleet::{binary, validate_post, FleetSyncPost, FleetSyncReply, KeyCounts};

const ROUNDS: u32 = 200;

fn thousand_keys(now_ms: u64) -> FleetSyncPost {
    let minute = now_ms / 2_000;
    let (hour, day) = (now_ms / 120_000, now_ms / 3_600_000);
    let keys = (0..1_000u64)
        .map(|index| KeyCounts {
            key: format!("{:032x}", index.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            limits: [Some(if index < 100 { 3_000 } else { 100_000 }), None, None],
            counts: [
                (minute - 29..=minute).map(|b| (b, 1 + b % 3)).collect(),
                vec![(hour, 64)],
                vec![(day, 64)],
            ],
        })
        .collect();
    FleetSyncPost {
        proxy_id: "bench-envoy-000-3f2a1c".into(),
        bucket_ms: [2_000, 120_000, 3_600_000],
        window_ms: [60_000, 3_600_000, 86_400_000],
        keys,
    }
}

type Error = Box<dyn std::error::Error>;

/// The median of `ROUNDS` timings of `work`.
fn median(mut work: impl FnMut() -> Result<(), Error>) -> Result<Duration, Error> {
    let mut times = Vec::with_capacity(ROUNDS as usize);
    for _ in 0..ROUNDS {
        let began = Instant::now();
        work()?;
        times.push(began.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn main() -> Result<(), Error> {
    let post = thousand_keys(1_765_000_000_000);
    let reply = FleetSyncReply {
        keys: post.keys.clone(),
        ..FleetSyncReply::default()
    };
    let json_post = serde_json::to_vec(&post)?;
    let binary_post = binary::encode_post(&post)?;
    let json_reply = serde_json::to_vec(&reply)?;
    let binary_reply = binary::encode_reply(&reply)?;
    println!(
        "post of 1,000 keys: JSON {} bytes, binary {} bytes ({:.1}x smaller)",
        json_post.len(),
        binary_post.len(),
        json_post.len() as f64 / binary_post.len() as f64
    );
    println!(
        "reply of 1,000 keys: JSON {} bytes, binary {} bytes",
        json_reply.len(),
        binary_reply.len()
    );
    let json = median(|| {
        let mut deserializer = serde_json::Deserializer::from_slice(&json_post);
        let read: FleetSyncPost = serde_path_to_error::deserialize(&mut deserializer)?;
        validate_post(&read)?;
        black_box(serde_json::to_vec(black_box(&reply))?);
        Ok(())
    })?;
    let compact = median(|| {
        let read = binary::decode_post(&binary_post)?;
        validate_post(&read)?;
        black_box(binary::encode_reply(black_box(&reply))?);
        Ok(())
    })?;
    println!(
        "decode + validate + encode per sync (median of {ROUNDS}): JSON {:.2} ms, binary {:.2} ms",
        json.as_secs_f64() * 1e3,
        compact.as_secs_f64() * 1e3
    );
    Ok(())
}
