//! What the runs report besides latencies: quantiles, the replicas' CPU time and their
//! `GET /v1/snapshot/polls` counters.

use crate::client::{CallError, Connection};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// p50, p99 and max of `samples` in milliseconds (sorted in place), as JSON; nulls when empty.
pub fn quantiles_ms(samples: &mut [Duration]) -> Value {
    samples.sort_unstable();
    let at = |q: f64| {
        let last = samples.len().checked_sub(1)?;
        let index = ((samples.len() as f64 * q) as usize).min(last);
        samples
            .get(index)
            .map(|sample| (sample.as_secs_f64() * 1e5).round() / 100.0)
    };
    json!({"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)})
}

/// User + system CPU seconds of each process in `pids` (0 for one that is gone), from
/// `/proc/PID/stat` at `ticks_per_second`.
pub fn cpu_seconds(pids: &[u32], ticks_per_second: f64) -> Vec<f64> {
    pids.iter()
        .map(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return 0.0;
            };
            // Fields after the command name, which may hold spaces, closed by the last ')'.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let ticks = |index: usize| {
                fields
                    .get(index)
                    .and_then(|field| field.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            (ticks(11) + ticks(12)) / ticks_per_second
        })
        .collect()
}

/// Differences, rounded to 10 ms.
pub fn spent(before: &[f64], after: &[f64]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(before, after)| ((after - before) * 100.0).round() / 100.0)
        .collect()
}

/// One replica's `GET /v1/snapshot/polls`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeedCounters {
    pub held: u64,
    pub delta_pages_built: u64,
    pub delta_cache_bytes: u64,
}

/// Reads `GET /v1/snapshot/polls` (a field the service does not report reads 0).
pub async fn feed_counters(
    connection: &mut Connection,
    sync_token: &str,
) -> Result<FeedCounters, CallError> {
    let answer = connection
        .json(Method::GET, "/v1/snapshot/polls", sync_token, None)
        .await?;
    if answer.status != StatusCode::OK {
        return Err(CallError::Http(format!(
            "/v1/snapshot/polls answered {}",
            answer.status
        )));
    }
    let value: Value = serde_json::from_slice(&answer.body)
        .map_err(|error| CallError::Page(format!("/v1/snapshot/polls: {error}")))?;
    let field = |name: &str| value.get(name).and_then(Value::as_u64).unwrap_or(0);
    Ok(FeedCounters {
        held: field("held"),
        delta_pages_built: field("delta_pages_built"),
        delta_cache_bytes: field("delta_cache_bytes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_hundred_samples() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(
            quantiles_ms(&mut samples),
            json!({"p50_ms": 51.0, "p99_ms": 100.0, "max_ms": 100.0})
        );
        assert_eq!(
            quantiles_ms(&mut []),
            json!({"p50_ms": null, "p99_ms": null, "max_ms": null})
        );
    }

    #[test]
    fn cpu_of_this_process_and_of_none() {
        let seconds = cpu_seconds(&[std::process::id(), u32::MAX], 100.0);
        assert!(seconds[0] >= 0.0);
        assert_eq!(seconds[1], 0.0);
        assert_eq!(spent(&[1.0, 2.0], &[1.5, 2.004]), vec![0.5, 0.0]);
    }
}
