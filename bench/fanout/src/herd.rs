//! Restart herd: N proxies start within a spread (one second by default), each on a new
//! connection, and page through a full snapshot with `cursor` as a starting filter does; the
//! time from each one's first request to its last page, and to the last proxy holding it all.

use crate::client::{CallError, Connection, Replica};
use crate::measure::{cpu_seconds, quantiles_ms, spent};
use hyper::StatusCode;
use keygate_contract::compact::decode_page;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// The herd run's settings.
pub struct Settings {
    pub replicas: Vec<Replica>,
    pub proxies: usize,
    /// Proxies start evenly over this span.
    pub spread: Duration,
    pub page_size: usize,
    pub replica_pids: Vec<u32>,
    pub ticks_per_second: f64,
    pub sync_token: String,
}

/// One proxy's load.
struct Load {
    took: Duration,
    /// From the herd's start to this proxy holding every page.
    done_at: Duration,
    keys: u64,
    total_keys: u64,
    pages: u64,
    bytes: u64,
}

/// Pages through a full snapshot from `replica`.
async fn load(
    replica: &Replica,
    token: &str,
    page_size: usize,
    herd_start: Instant,
) -> Result<Load, CallError> {
    let began = Instant::now();
    let mut connection = Connection::open(replica).await?;
    let (mut keys, mut pages, mut bytes, mut total_keys) = (0, 0, 0, 0);
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/v1/snapshot?limit={page_size}"),
            Some(cursor) => format!("/v1/snapshot?limit={page_size}&cursor={cursor}"),
        };
        let answer = connection.snapshot(&path, token, None).await?;
        if answer.status != StatusCode::OK {
            return Err(CallError::Http(format!("status {}", answer.status)));
        }
        let page = decode_page(&answer.body).map_err(|e| CallError::Page(e.to_string()))?;
        if !page.header.full {
            return Err(CallError::Page("a delta where a full page was due".into()));
        }
        if pages == 0 {
            total_keys = page.header.total_keys;
        }
        pages += 1;
        keys += page.records.len() as u64;
        bytes += answer.body.len() as u64;
        cursor = page.header.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    Ok(Load {
        took: began.elapsed(),
        done_at: herd_start.elapsed(),
        keys,
        total_keys,
        pages,
        bytes,
    })
}

/// Runs the herd and returns its report.
pub async fn run(settings: Settings) -> Result<Value, String> {
    if settings.replicas.is_empty() || settings.proxies == 0 {
        return Err("the herd needs replicas and proxies".into());
    }
    let cpu_before = cpu_seconds(&settings.replica_pids, settings.ticks_per_second);
    let herd_start = Instant::now() + Duration::from_millis(100);
    let mut loads = Vec::new();
    for index in 0..settings.proxies {
        let replica = settings
            .replicas
            .get(index % settings.replicas.len())
            .cloned()
            .ok_or("no replica")?;
        let token = settings.sync_token.clone();
        let page_size = settings.page_size;
        let offset = settings
            .spread
            .mul_f64(index as f64 / settings.proxies as f64);
        loads.push(tokio::spawn(async move {
            tokio::time::sleep_until(herd_start + offset).await;
            load(&replica, &token, page_size, herd_start).await
        }));
    }
    let (mut took, mut done_at) = (Vec::new(), Vec::new());
    let (mut complete, mut pages, mut bytes, mut keys_per_proxy) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for load in loads {
        match load.await {
            Ok(Ok(load)) => {
                took.push(load.took);
                done_at.push(load.done_at);
                if load.keys == load.total_keys {
                    complete += 1;
                }
                keys_per_proxy = keys_per_proxy.max(load.keys);
                pages += load.pages;
                bytes += load.bytes;
            }
            Ok(Err(error)) => failures.push(error.to_string()),
            Err(error) => failures.push(error.to_string()),
        }
    }
    let cpu = spent(
        &cpu_before,
        &cpu_seconds(&settings.replica_pids, settings.ticks_per_second),
    );
    let last = done_at.iter().max().copied().unwrap_or_default();
    failures.sort();
    failures.dedup();
    Ok(json!({
        "proxies": settings.proxies,
        "spread_s": settings.spread.as_secs_f64(),
        "page_size": settings.page_size,
        "keys": keys_per_proxy,
        "complete": complete,
        "failed": settings.proxies - took.len(),
        "failures": failures.into_iter().take(5).collect::<Vec<_>>(),
        "pages": pages,
        "received_mb": (bytes as f64 / 1e5).round() / 10.0,
        "load": quantiles_ms(&mut took),
        "done_after_start": quantiles_ms(&mut done_at),
        "last_proxy_s": (last.as_secs_f64() * 100.0).round() / 100.0,
        "replica_cpu_s": cpu,
    }))
}
