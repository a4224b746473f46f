//! `sync`: simulated Envoys posting `POST /v1/ratelimits/sync` once a second each, as the filter
//! does (bench/fleet_sync.py runs it with `BENCH_CLIENT=rust`, the default, so the clients take
//! a small share of the cores they share with the control plane they measure).
//!
//! Each Envoy has `keys` active limited keys: `shared` of them the same for every Envoy, the
//! rest its own, `hot` of those near their limit. A post carries every key, with, per key, the
//! minute window's buckets (1 to 3 admitted each, the newest growing), the hour's and the day's.
//! The first post, one a minute after it and one after a 409 carry every bucket; the others
//! only the buckets that can have changed (`keygate-sync-buckets: changed`: the two newest
//! minute buckets), like the filter. Bodies are built with the contract's own encoder.

use crate::client::{Connection, Replica};
use crate::measure::quantiles_ms;
use keygate_contract::fleet::{self, binary, FleetSyncPost, KeyCounts};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BUCKET_MS: [u64; 3] = [2_000, 120_000, 3_600_000];
const WINDOW_MS: [u64; 3] = [60_000, 3_600_000, 86_400_000];
const FULL_POST_EVERY: Duration = Duration::from_secs(60);
const PATH: &str = "/v1/ratelimits/sync";

pub struct Settings {
    pub replicas: Vec<Replica>,
    pub envoys: usize,
    pub keys: usize,
    pub shared: usize,
    pub hot: usize,
    /// Makes this run's key tags its own (a hex number).
    pub salt: u64,
    /// `sticky` (an Envoy keeps its replica) or `alternate` (each sync goes to the next one).
    pub alternate: bool,
    /// Unix ms at which the Envoys start, the warm-up not measured, and the measured time.
    pub start_ms: u64,
    pub warmup: Duration,
    pub measured: Duration,
    pub sync_token: String,
}

/// What one simulated Envoy saw after the warm-up.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    failed: usize,
    answered_keys: Vec<usize>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

struct Envoy {
    proxy_id: String,
    /// Each key's tag and limits.
    keys: Vec<(String, [Option<u64>; 3])>,
}

impl Envoy {
    fn new(index: usize, settings: &Settings) -> Envoy {
        let tag = |owner: u64, n: usize| format!("{:016x}{:016x}", settings.salt ^ owner, n);
        let own = settings.keys.saturating_sub(settings.shared);
        let mut keys: Vec<(String, [Option<u64>; 3])> = (0..settings.shared)
            .map(|n| (tag(0, n), [Some(3_000), None, None]))
            .collect();
        keys.extend((0..own).map(|n| {
            let limit = if n < settings.hot { 90 } else { 100_000 };
            (tag(index as u64 + 1, n), [Some(limit), None, None])
        }));
        Envoy {
            proxy_id: format!("bench-envoy-{index:03}-{:x}", settings.salt & 0xffffff),
            keys,
        }
    }

    /// The post at `now_ms`: every bucket of the minute window or the two newest.
    fn body(&self, now_ms: u64, every_bucket: bool) -> Vec<u8> {
        let [minute, hour, day] = BUCKET_MS.map(|width| now_ms / width);
        let oldest = if every_bucket {
            minute - 29
        } else {
            minute - 1
        };
        let newest = 1 + (now_ms % BUCKET_MS[0]) / 500;
        let total = 60 + newest;
        let mut minutes: Vec<(u64, u64)> = (oldest..minute).map(|b| (b, 1 + b % 3)).collect();
        minutes.push((minute, newest));
        let counts = [minutes, vec![(hour, total)], vec![(day, total)]];
        let post = FleetSyncPost {
            proxy_id: self.proxy_id.clone(),
            bucket_ms: BUCKET_MS,
            window_ms: WINDOW_MS,
            keys: self
                .keys
                .iter()
                .map(|(tag, limits)| KeyCounts {
                    key: tag.clone(),
                    limits: *limits,
                    counts: counts.clone(),
                })
                .collect(),
        };
        binary::encode_post(&post).unwrap_or_default()
    }
}

/// One Envoy's life: a sync a second from its offset, one in flight (a slow one skips ticks).
async fn run_envoy(index: usize, settings: Arc<Settings>, seen: Arc<Mutex<Seen>>) {
    let envoy = Envoy::new(index, &settings);
    let offset_ms = (1_000 * index / settings.envoys.max(1)) as u64;
    let start = settings.start_ms + offset_ms;
    let measure_from = start + settings.warmup.as_millis() as u64;
    let stop = measure_from + settings.measured.as_millis() as u64;
    let mut connections: Vec<Option<Connection>> = settings.replicas.iter().map(|_| None).collect();
    let mut full_at: Option<u64> = None;
    let mut sent = 0usize;
    let mut tick = start;
    let mut mine = Seen::default();
    while tick < stop {
        let now = unix_ms();
        if now < tick {
            tokio::time::sleep(Duration::from_millis(tick - now)).await;
        }
        let began_ms = unix_ms();
        let began = std::time::Instant::now();
        let mut every_bucket = full_at
            .is_none_or(|at| began_ms.saturating_sub(at) >= FULL_POST_EVERY.as_millis() as u64);
        let mut ok = false;
        let mut answered = 0;
        for _ in 0..2 {
            let replica = (index + if settings.alternate { sent } else { 0 }) % connections.len();
            sent += 1;
            if connections[replica].is_none() {
                connections[replica] = Connection::open(&settings.replicas[replica]).await.ok();
            }
            let Some(connection) = connections[replica].as_mut() else {
                break;
            };
            let body = envoy.body(unix_ms(), every_bucket);
            match connection
                .fleet_sync(PATH, &settings.sync_token, body, !every_bucket)
                .await
            {
                Ok(answer)
                    if answer.status.as_u16() == fleet::RESEND_EVERY_BUCKET_STATUS
                        && !every_bucket =>
                {
                    every_bucket = true;
                }
                Ok(answer) => {
                    ok = answer.status.is_success();
                    answered =
                        binary::decode_reply(&answer.body).map_or(0, |reply| reply.keys.len());
                    break;
                }
                Err(_) => {
                    connections[replica] = None;
                    break;
                }
            }
        }
        if ok && every_bucket {
            full_at = Some(began_ms);
        }
        if tick >= measure_from {
            if ok {
                mine.latencies.push(began.elapsed());
                if mine.latencies.len() % 10 == 1 {
                    mine.answered_keys.push(answered);
                }
            } else {
                mine.failed += 1;
            }
        }
        // The next tick not yet begun.
        tick += 1_000;
        let now = unix_ms();
        if now > tick {
            tick += (now - tick).div_ceil(1_000) * 1_000;
        }
    }
    if let Ok(mut all) = seen.lock() {
        all.latencies.extend(mine.latencies);
        all.failed += mine.failed;
        all.answered_keys.extend(mine.answered_keys);
    }
}

pub async fn run(settings: Settings) -> Result<Value, String> {
    let settings = Arc::new(settings);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let envoys: Vec<_> = (0..settings.envoys)
        .map(|index| tokio::spawn(run_envoy(index, Arc::clone(&settings), Arc::clone(&seen))))
        .collect();
    for envoy in envoys {
        envoy
            .await
            .map_err(|error| format!("a simulated Envoy failed: {error}"))?;
    }
    let mut seen = seen.lock().map_err(|_| "results lost".to_string())?;
    let syncs = seen.latencies.len();
    seen.answered_keys.sort_unstable();
    let median = seen
        .answered_keys
        .get(seen.answered_keys.len() / 2)
        .copied()
        .unwrap_or(0);
    let mut report = json!({
        "syncs": syncs,
        "failed": seen.failed,
        "keys_answered_median": median,
    });
    if let (Some(report), Value::Object(quantiles)) =
        (report.as_object_mut(), quantiles_ms(&mut seen.latencies))
    {
        report.extend(quantiles);
    }
    Ok(report)
}
