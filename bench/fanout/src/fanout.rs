//! Revocation fan-out: N simulated proxies, spread over the replicas, each holding a long poll
//! for the next delta as the filter does; then one admin `PATCH /v1/keys/{id}` at a time, and
//! the time from sending it to each proxy holding a delta whose record for that key is inactive.

use crate::client::{CallError, Connection, Replica};
use crate::measure::{cpu_seconds, feed_counters, quantiles_ms, spent, FeedCounters};
use hyper::{Method, StatusCode};
use keygate_contract::compact::{decode_page, decode_record};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How a failed poll is retried: the filter's first backoff step.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Connections opened at once while the fleet starts.
const CONNECTING_AT_ONCE: usize = 256;
/// Longest the whole fleet may take to connect and hold its polls.
const HOLD_DEADLINE: Duration = Duration::from_secs(180);

/// The fan-out run's settings.
pub struct Settings {
    pub replicas: Vec<Replica>,
    pub proxies: usize,
    /// One revocation per key id, in order.
    pub revoke: Vec<String>,
    pub wait_seconds: u64,
    pub page_size: usize,
    /// Quiet time after each revocation's last delivery, before the next.
    pub pause: Duration,
    /// Longest to wait for every proxy to have a revocation.
    pub deliver_timeout: Duration,
    pub replica_pids: Vec<u32>,
    pub ticks_per_second: f64,
    pub sync_token: String,
    pub admin_token: String,
}

/// What the simulated proxies saw, shared by all of them.
struct Fleet {
    started: Instant,
    revoked: Vec<String>,
    /// Per revocation and proxy: nanoseconds from `started` to the delta carrying it, plus one
    /// (0: not yet).
    arrivals: Vec<Vec<AtomicU64>>,
    delivered: Vec<AtomicUsize>,
    errors: AtomicU64,
    full_pages: AtomicU64,
}

impl Fleet {
    fn new(proxies: usize, revoked: Vec<String>) -> Fleet {
        Fleet {
            started: Instant::now(),
            arrivals: revoked
                .iter()
                .map(|_| (0..proxies).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            delivered: revoked.iter().map(|_| AtomicUsize::new(0)).collect(),
            revoked,
            errors: AtomicU64::new(0),
            full_pages: AtomicU64::new(0),
        }
    }

    /// Notes which revocations the page carries for `proxy`; returns the page's version.
    fn read_page(&self, proxy: usize, body: &[u8], at: Duration) -> Result<u64, CallError> {
        let page = decode_page(body).map_err(|error| CallError::Page(error.to_string()))?;
        if page.header.full {
            self.full_pages.fetch_add(1, Ordering::Relaxed);
        }
        let stamp = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        for body in &page.records {
            let Ok(record) = decode_record(body) else {
                continue;
            };
            let revocation = self.revoked.iter().position(|id| *id == record.id);
            if let (false, Some(revocation)) = (record.active, revocation) {
                let slot = self
                    .arrivals
                    .get(revocation)
                    .and_then(|arrivals| arrivals.get(proxy));
                let first = slot.is_some_and(|slot| {
                    slot.compare_exchange(0, stamp, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                });
                if let (true, Some(count)) = (first, self.delivered.get(revocation)) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(page.header.version)
    }

    fn delivered(&self, revocation: usize) -> usize {
        self.delivered
            .get(revocation)
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// Time from `sent` (since `started`) to each proxy's delivery of `revocation`.
    fn latencies(&self, revocation: usize, sent: Duration) -> Vec<Duration> {
        self.arrivals
            .get(revocation)
            .map(|arrivals| {
                arrivals
                    .iter()
                    .map(|arrival| arrival.load(Ordering::Relaxed))
                    .filter(|stamp| *stamp > 0)
                    .map(|stamp| Duration::from_nanos(stamp - 1).saturating_sub(sent))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One simulated proxy: connect, then long-poll for the next delta forever, re-polling with
/// each answer's version as the filter does.
async fn simulated_proxy(
    index: usize,
    replica: Replica,
    fleet: Arc<Fleet>,
    settings: Arc<Settings>,
    start: (u64, String),
    connecting: Arc<Semaphore>,
) {
    let permit = connecting.acquire().await;
    let mut connection = match Connection::open(&replica).await {
        Ok(connection) => connection,
        Err(_) => {
            fleet.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    drop(permit);
    let (mut version, epoch) = start;
    loop {
        let path = format!(
            "/v1/snapshot?since={version}&epoch={epoch}&wait={}&limit={}",
            settings.wait_seconds, settings.page_size
        );
        let tag = format!("\"{epoch}-{version}\"");
        let answer = connection
            .snapshot(&path, &settings.sync_token, Some(&tag))
            .await;
        let read = match answer {
            Ok(answer) if answer.status == StatusCode::OK => {
                fleet.read_page(index, &answer.body, fleet.started.elapsed())
            }
            Ok(answer) if answer.status == StatusCode::NOT_MODIFIED => Ok(version),
            Ok(answer) => Err(CallError::Http(format!("status {}", answer.status))),
            Err(error) => Err(error),
        };
        match read {
            Ok(moved) => version = moved,
            Err(error) => {
                fleet.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(RETRY_AFTER).await;
                if matches!(error, CallError::Http(_) | CallError::Connect(_)) {
                    if let Ok(reopened) = Connection::open(&replica).await {
                        connection = reopened;
                    }
                }
            }
        }
    }
}

async fn all_counters(
    monitors: &mut [Connection],
    token: &str,
) -> Result<Vec<FeedCounters>, String> {
    let mut counters = Vec::new();
    for monitor in monitors.iter_mut() {
        counters.push(
            feed_counters(monitor, token)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(counters)
}

/// Waits until the replicas together hold `proxies` polls.
async fn wait_held(
    monitors: &mut [Connection],
    token: &str,
    proxies: usize,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let counters = all_counters(monitors, token).await?;
        let held: u64 = counters.iter().map(|counters| counters.held).sum();
        if held >= proxies as u64 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "only {held} of {proxies} polls held after {within:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The version and epoch a proxy starts from: the first page of a full snapshot.
async fn current_version(replica: &Replica, token: &str) -> Result<(u64, String), String> {
    let mut connection = Connection::open(replica).await.map_err(|e| e.to_string())?;
    let answer = connection
        .snapshot("/v1/snapshot?limit=1", token, None)
        .await
        .map_err(|e| e.to_string())?;
    if answer.status != StatusCode::OK {
        return Err(format!("first snapshot page: status {}", answer.status));
    }
    let page = decode_page(&answer.body).map_err(|e| format!("first snapshot page: {e}"))?;
    Ok((page.header.version, page.header.epoch))
}

/// The replica proxy `index` polls: proxies are dealt round-robin.
fn replica_for(replicas: &[Replica], index: usize, first: &Replica) -> Replica {
    replicas
        .get(index % replicas.len().max(1))
        .unwrap_or(first)
        .clone()
}

/// Runs the fan-out and returns its report.
pub async fn run(settings: Settings) -> Result<Value, String> {
    let settings = Arc::new(settings);
    let mut monitors = Vec::new();
    for replica in &settings.replicas {
        monitors.push(Connection::open(replica).await.map_err(|e| e.to_string())?);
    }
    let first = settings.replicas.first().ok_or("no replica given")?;
    let start = current_version(first, &settings.sync_token).await?;
    let fleet = Arc::new(Fleet::new(settings.proxies, settings.revoke.clone()));
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let connect_started = Instant::now();
    for index in 0..settings.proxies {
        let replica = replica_for(&settings.replicas, index, first);
        tokio::spawn(simulated_proxy(
            index,
            replica,
            Arc::clone(&fleet),
            Arc::clone(&settings),
            start.clone(),
            Arc::clone(&connecting),
        ));
    }
    let token = settings.sync_token.clone();
    wait_held(&mut monitors, &token, settings.proxies, HOLD_DEADLINE).await?;
    let all_held_s = connect_started.elapsed().as_secs_f64();
    let cpu_before = cpu_seconds(&settings.replica_pids, settings.ticks_per_second);
    let counters_before = all_counters(&mut monitors, &token).await?;
    let mut every = Vec::new();
    let mut revocations = Vec::new();
    for (revocation, id) in settings.revoke.iter().enumerate() {
        wait_held(&mut monitors, &token, settings.proxies, HOLD_DEADLINE).await?;
        let before = all_counters(&mut monitors, &token).await?;
        let via = revocation % monitors.len();
        let admin = monitors.get_mut(via).ok_or("no replica to revoke on")?;
        let sent = fleet.started.elapsed();
        let sent_at = Instant::now();
        let patched = admin
            .json(
                Method::PATCH,
                &format!("/v1/keys/{id}"),
                &settings.admin_token,
                Some(r#"{"active":false}"#.to_string()),
            )
            .await
            .map_err(|e| e.to_string())?;
        let patch_ms = sent_at.elapsed().as_secs_f64() * 1000.0;
        if patched.status != StatusCode::OK {
            return Err(format!("PATCH /v1/keys/{id}: status {}", patched.status));
        }
        let deadline = sent_at + settings.deliver_timeout;
        while fleet.delivered(revocation) < settings.proxies && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut latencies = fleet.latencies(revocation, sent);
        tokio::time::sleep(settings.pause).await;
        let after = all_counters(&mut monitors, &token).await?;
        every.extend_from_slice(&latencies);
        revocations.push(json!({
            "via_replica": via,
            "patch_ms": (patch_ms * 100.0).round() / 100.0,
            "delivered": latencies.len(),
            "latency": quantiles_ms(&mut latencies),
            "delta_pages_built": before.iter().zip(&after)
                .map(|(before, after)| after.delta_pages_built - before.delta_pages_built)
                .collect::<Vec<_>>(),
        }));
    }
    let cpu = spent(
        &cpu_before,
        &cpu_seconds(&settings.replica_pids, settings.ticks_per_second),
    );
    let counters_after = all_counters(&mut monitors, &token).await?;
    let count = settings.revoke.len().max(1) as f64;
    let expected = settings.proxies * settings.revoke.len();
    Ok(json!({
        "proxies": settings.proxies,
        "replicas": settings.replicas.len(),
        "revocations": settings.revoke.len(),
        "delivered": every.len(),
        "expected": expected,
        "latency": quantiles_ms(&mut every),
        "all_polls_held_s": (all_held_s * 100.0).round() / 100.0,
        "replica_cpu_s": cpu,
        "replica_cpu_s_per_revocation": cpu.iter().map(|s| (s / count * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        "delta_pages_built": counters_before.iter().zip(&counters_after)
            .map(|(before, after)| after.delta_pages_built - before.delta_pages_built)
            .collect::<Vec<_>>(),
        "delta_cache_bytes": counters_after.iter().map(|c| c.delta_cache_bytes).collect::<Vec<_>>(),
        "poll_errors": fleet.errors.load(Ordering::Relaxed),
        "unexpected_full_pages": fleet.full_pages.load(Ordering::Relaxed),
        "per_revocation": revocations,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_contract::compact::{encode_page, encode_record, PageHeader};
    use keygate_contract::snapshot::KeyRecord;

    fn framed(id: &str, hash_byte: char, active: bool) -> Vec<u8> {
        let record: KeyRecord = serde_json::from_value(json!({
            "id": id, "hash": hash_byte.to_string().repeat(64), "prefix": "pk_live_",
            "name": "n", "environment": "live", "active": active,
        }))
        .unwrap();
        encode_record(&record).unwrap()
    }

    fn delta(version: u64, records: &[Vec<u8>]) -> Vec<u8> {
        let header = PageHeader {
            version,
            since: version - 1,
            full: false,
            epoch: "e".into(),
            next_cursor: None,
            total_keys: 0,
        };
        encode_page(&header, records.len() as u32, &records.concat(), &[]).unwrap()
    }

    #[test]
    fn a_proxy_counts_a_revocation_once_and_only_when_inactive() {
        let fleet = Fleet::new(2, vec!["key_a".into(), "key_b".into()]);
        let still_active = delta(5, &[framed("key_a", 'a', true)]);
        assert_eq!(
            fleet
                .read_page(0, &still_active, Duration::from_millis(3))
                .unwrap(),
            5
        );
        assert_eq!(fleet.delivered(0), 0);
        let both = delta(
            6,
            &[framed("key_a", 'a', false), framed("key_c", 'c', false)],
        );
        fleet
            .read_page(0, &both, Duration::from_millis(10))
            .unwrap();
        fleet
            .read_page(0, &both, Duration::from_millis(20))
            .unwrap();
        fleet
            .read_page(1, &both, Duration::from_millis(30))
            .unwrap();
        assert_eq!((fleet.delivered(0), fleet.delivered(1)), (2, 0));
        let mut latencies = fleet.latencies(0, Duration::from_millis(4));
        latencies.sort();
        assert_eq!(
            latencies,
            [Duration::from_millis(6), Duration::from_millis(26)]
        );
        assert!(fleet.read_page(0, b"not a page", Duration::ZERO).is_err());
    }
}
