//! The replicas' shared fleet counts in Redis: every `FLUSH_INTERVAL` one pipelined round trip
//! writes what this replica's Envoys admitted of its published keys (`memory::publish`), reads
//! back the fleet's totals of every key published anywhere, announces newly published keys and
//! learns the others' announcements.
//!
//! Layout (prefix `keygate:fleet:`):
//! - `t:{tag}`: a hash of the key's fleet totals, field `{window}:{bucket_ms}:{bucket}`, and
//!   `lim` (its limits, `minute,hour,day`, empty for none), `p1` (the first proxy that wrote it)
//!   and `shared` (another proxy did too); buckets that left their window are removed once
//!   the hash holds more than 80 fields (its windows hold about 64; readers skip the old ones).
//! - `p:{tag}:{window}:{bucket_ms}:{bucket}`: a hash of each proxy's absolute count of the bucket;
//!   it expires when the bucket leaves its window. The script raises a proxy's count only upward
//!   and adds the increase to the total, so a retried flush, two replicas writing the same proxy
//!   (an Envoy whose syncs alternate between them), or a replica killed between two flushes
//!   never counts a request twice.
//! - `published`: a stream of announced keys (`k` the tag, `l` the limits), trimmed to ~100,000.
//! - `replicas`: a sorted set of live replicas by last flush; `epoch`: a random id set once, so a
//!   Redis that lost its data (restarted without persistence) is noticed and written again.
//!
//! Cost per flush: one script call per published key with new counts, four calls in it per
//! bucket raised since the last flush whatever the number of its Envoys (their counts are
//! arguments: one pair per proxy whose count grew), and one `HGETALL` per other published key:
//! Redis calls grow with replicas × published keys × raised buckets, not with Envoys.
//!
//! Redis down or slow: the flush fails (`keygate_control_fleet_redis_up` 0), nothing is marked
//! flushed, and answers go on from this replica's own Envoys' counts plus the last totals read,
//! which age out with their buckets. The next flush that succeeds writes everything that grew.

use crate::fleet::memory::{Flush, KeyTotals, PublishedKey, Raise, Totals, Warmth};
use crate::fleet::FleetCounts;
use keygate_contract::fleet::WINDOWS;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a replica flushes. The overshoot bound counts it twice (docs/rate-limits.md).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// A flush that takes longer has failed: its counts are written by the next one.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// A replica that has not flushed for this long is not counted among the live ones.
const REPLICA_TTL_MS: u64 = 5_000;
/// Announcements kept in the stream (a replica starting reads them all).
const STREAM_LENGTH: usize = 100_000;
/// Announcements read per flush.
const STREAM_READ: usize = 10_000;
const PREFIX: &str = "keygate:fleet:";

/// Raises proxies' counts of one key. KEYS[1]: the totals; KEYS[1 + g]: group g's bucket.
/// ARGV: limits, how long the totals are kept (ms), what they forget
/// (`window:bucket_ms:below,…`), then per group (one bucket): its field in the totals, how long
/// it is kept (ms), how many proxies, and each proxy's name and count. Answers the totals
/// (HGETALL).
///
/// Per group a fixed number of calls (HMGET, HSET, HINCRBY, PTTL) whatever its proxies: a
/// replica holding hundreds of Envoys that share a key writes each bucket in four calls, not
/// four per Envoy (Redis then spends its time on the hash fields, not on Lua calls).
const RAISE_SCRIPT: &str = include_str!("redis/raise.lua");
/// Proxies per group of the script (Lua's `unpack` takes a few thousand values at most).
const MAX_GROUP: usize = 1_000;

/// What the flushes did, for `GET /metrics`.
#[derive(Debug, Default)]
pub struct FlushStats {
    pub up: AtomicU64,
    pub flushes: AtomicU64,
    pub failures: AtomicU64,
    pub published_keys: AtomicU64,
    pub live_replicas: AtomicU64,
    pub last_flush_micros: AtomicU64,
}

/// A replica's link to Redis.
pub struct RedisLink {
    connection: ConnectionManager,
    replica: String,
    script: redis::Script,
    script_loaded: bool,
    epoch: Option<String>,
    stream_from: String,
    replicas: u64,
    pub stats: Arc<FlushStats>,
}

impl RedisLink {
    /// A link that connects on first use (a replica starts while Redis is down, and works).
    fn new(url: &str, stats: Arc<FlushStats>) -> Result<RedisLink, String> {
        let client = Client::open(url).map_err(|error| format!("bad Redis URL: {error}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(FLUSH_TIMEOUT))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|error| format!("cannot set up the Redis connection: {error}"))?;
        Ok(RedisLink {
            connection,
            replica: random_id(),
            script: redis::Script::new(RAISE_SCRIPT),
            script_loaded: false,
            epoch: None,
            stream_from: "0".into(),
            replicas: 1,
            stats,
        })
    }

    /// Flushes every `FLUSH_INTERVAL` until the process ends. Private: it runs only on the
    /// thread `spawn_thread` starts, never on the service's runtime.
    async fn run(mut self, counts: Arc<FleetCounts>) {
        let mut every = tokio::time::interval(FLUSH_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_up = true;
        loop {
            every.tick().await;
            let began = Instant::now();
            let result = self.flush_once(&counts).await;
            let stats = &self.stats;
            stats
                .last_flush_micros
                .store(began.elapsed().as_micros() as u64, Ordering::Relaxed);
            match result {
                Ok(()) => {
                    stats.flushes.fetch_add(1, Ordering::Relaxed);
                    stats.up.store(1, Ordering::Relaxed);
                    if !was_up {
                        println!("fleet counts: Redis is back, flushing again");
                    }
                    was_up = true;
                }
                Err(error) => self.failed(&mut was_up, &error),
            }
        }
    }

    fn failed(&mut self, was_up: &mut bool, error: &str) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.stats.up.store(0, Ordering::Relaxed);
        // The script is loaded again: a restarted Redis has forgotten it.
        self.script_loaded = false;
        if *was_up {
            eprintln!(
                "fleet counts: Redis flush failed, answering from this replica's own Envoys' \
                 counts until it works: {error}"
            );
        }
        *was_up = false;
    }

    async fn flush_once(&mut self, counts: &FleetCounts) -> Result<(), String> {
        let now_ms = crate::domain::clock::now_ms();
        let warmth = Warmth::ShareOf {
            replicas: self.replicas,
        };
        let flush = counts.with_memory(|memory| memory.take_flush(warmth, now_ms));
        let Some(flush) = flush else {
            return Ok(());
        };
        let exchanged = tokio::time::timeout(FLUSH_TIMEOUT, self.exchange(&flush, now_ms))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        let answer = match exchanged {
            Ok(answer) => answer,
            Err(error) => {
                counts.with_memory(|memory| memory.retake(&flush));
                return Err(error);
            }
        };
        let lost = self
            .epoch
            .as_ref()
            .is_some_and(|held| *held != answer.epoch);
        self.epoch = Some(answer.epoch.clone());
        self.replicas = answer.replicas.max(1);
        self.stats
            .live_replicas
            .store(self.replicas, Ordering::Relaxed);
        if let Some(last) = answer.stream_last.clone() {
            self.stream_from = last;
        }
        counts.with_memory(|memory| {
            memory.learn_published(&answer.announced);
            if lost {
                eprintln!(
                    "fleet counts: Redis lost its data (a restart?): writing everything again"
                );
                memory.forget_flushed();
            } else {
                memory.apply_flush(&flush, &answer.totals);
            }
            self.stats
                .published_keys
                .store(memory.published_count() as u64, Ordering::Relaxed);
        });
        if lost {
            self.stream_from = "0".into();
        }
        Ok(())
    }

    /// One round trip: the flush's writes and reads, the heartbeat and the announcements.
    async fn exchange(&mut self, flush: &Flush, now_ms: u64) -> Result<Answer, String> {
        if !self.script_loaded {
            self.script
                .prepare_invoke()
                .load_async(&mut self.connection)
                .await
                .map_err(|error| format!("loading the script: {error}"))?;
            self.script_loaded = true;
        }
        let (pipe, layout) = self.pipeline(flush, now_ms);
        let values: Vec<Value> = pipe
            .query_async(&mut self.connection)
            .await
            .map_err(|error| error.to_string())?;
        layout.read(&values)
    }

    fn pipeline(&self, flush: &Flush, now_ms: u64) -> (redis::Pipeline, Layout) {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(format!("{PREFIX}epoch"))
            .arg(random_id())
            .arg("NX")
            .ignore();
        pipe.cmd("GET").arg(format!("{PREFIX}epoch"));
        let replicas = format!("{PREFIX}replicas");
        pipe.cmd("ZADD")
            .arg(&replicas)
            .arg(now_ms)
            .arg(&self.replica)
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&replicas)
            .arg("-inf")
            .arg(now_ms.saturating_sub(REPLICA_TTL_MS))
            .ignore();
        pipe.cmd("ZCARD").arg(&replicas);
        let stream = format!("{PREFIX}published");
        for key in &flush.announce {
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_LENGTH)
                .arg("*")
                .arg("k")
                .arg(&key.tag)
                .arg("l")
                .arg(limits_text(&key.limits))
                .ignore();
        }
        let forget: Vec<String> = flush
            .forget_below
            .iter()
            .map(|(window, bucket_ms, below)| format!("{window}:{bucket_ms}:{below}"))
            .collect();
        let forget = forget.join(",");
        for key in &flush.keys {
            let mut invocation = self.script.key(format!("{PREFIX}t:{}", key.tag));
            let keep_ms = key.raised.iter().map(|r| r.keep_ms).max().unwrap_or(1_000);
            invocation
                .arg(limits_text(&key.limits))
                .arg(keep_ms)
                .arg(&forget);
            for group in bucket_groups(&key.raised) {
                let first = &group[0];
                invocation
                    .key(format!(
                        "{PREFIX}p:{}:{}:{}:{}",
                        key.tag, first.window, first.bucket_ms, first.bucket
                    ))
                    .arg(format!(
                        "{}:{}:{}",
                        first.window, first.bucket_ms, first.bucket
                    ))
                    .arg(first.keep_ms)
                    .arg(group.len());
                for raise in group {
                    invocation.arg(&*raise.proxy).arg(raise.count);
                }
            }
            pipe.invoke_script(&invocation);
        }
        for tag in &flush.read {
            pipe.cmd("HGETALL").arg(format!("{PREFIX}t:{tag}"));
        }
        pipe.cmd("XREAD")
            .arg("COUNT")
            .arg(STREAM_READ)
            .arg("STREAMS")
            .arg(&stream)
            .arg(&self.stream_from);
        let layout = Layout {
            tags: flush
                .keys
                .iter()
                .map(|key| key.tag.clone())
                .chain(flush.read.iter().cloned())
                .collect(),
        };
        (pipe, layout)
    }
}

/// Where the answers of a flush's pipeline are: epoch, live replicas, one totals per tag, the
/// stream.
struct Layout {
    tags: Vec<String>,
}

struct Answer {
    epoch: String,
    replicas: u64,
    totals: Totals,
    announced: Vec<PublishedKey>,
    stream_last: Option<String>,
}

impl Layout {
    fn read(&self, values: &[Value]) -> Result<Answer, String> {
        let expected = 3 + self.tags.len();
        if values.len() != expected {
            return Err(format!(
                "Redis answered {} values, not {expected}",
                values.len()
            ));
        }
        let epoch = text(&values[0]).ok_or("no epoch in Redis")?;
        let replicas = match &values[1] {
            Value::Int(n) => u64::try_from(*n).unwrap_or(1),
            _ => 1,
        };
        let mut totals = Totals::new();
        for (tag, value) in self.tags.iter().zip(&values[2..2 + self.tags.len()]) {
            if let Some(key) = key_totals(value) {
                totals.insert(tag.clone(), key);
            }
        }
        let (announced, stream_last) = announcements(&values[expected - 1]);
        Ok(Answer {
            epoch,
            replicas,
            totals,
            announced,
            stream_last,
        })
    }
}

/// A totals hash as `HGETALL` or the script answers it; fields that do not parse are skipped
/// (another version's fields, say), never the whole key.
fn key_totals(value: &Value) -> Option<KeyTotals> {
    let pairs: Vec<(String, String)> = match value {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| Some((text(pair.first()?)?, text(pair.get(1)?)?)))
            .collect(),
        Value::Map(items) => items
            .iter()
            .filter_map(|(field, value)| Some((text(field)?, text(value)?)))
            .collect(),
        _ => return None,
    };
    if pairs.is_empty() {
        return None;
    }
    let mut totals = KeyTotals::default();
    for (field, value) in pairs {
        match field.as_str() {
            "lim" => {
                totals.limits = parse_limits(&value);
                continue;
            }
            "shared" => {
                totals.shared = value == "1";
                continue;
            }
            _ => {}
        }
        let mut parts = field.split(':').map(str::parse::<u64>);
        let (Some(Ok(window)), Some(Ok(bucket_ms)), Some(Ok(bucket)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(window), Ok(total)) = (usize::try_from(window), value.parse::<u64>()) else {
            continue;
        };
        if window < WINDOWS {
            let total = total.min(crate::fleet::MAX_COUNT);
            totals.buckets.push(((window, bucket_ms, bucket), total));
        }
    }
    Some(totals)
}

/// The stream entries of an `XREAD` answer, and the last id read.
fn announcements(value: &Value) -> (Vec<PublishedKey>, Option<String>) {
    let mut announced = Vec::new();
    let mut last = None;
    let streams: Vec<&Value> = match value {
        Value::Array(streams) => streams.iter().collect(),
        Value::Map(streams) => streams.iter().map(|(_, entries)| entries).collect(),
        _ => return (announced, last),
    };
    for stream in streams {
        // RESP2: [name, entries]; RESP3 map values are the entries themselves.
        let entries = match stream {
            Value::Array(pair) if pair.len() == 2 && matches!(pair[1], Value::Array(_)) => &pair[1],
            other => other,
        };
        let Value::Array(entries) = entries else {
            continue;
        };
        for entry in entries {
            let Value::Array(parts) = entry else { continue };
            let (Some(id), Some(Value::Array(fields))) =
                (parts.first().and_then(text), parts.get(1))
            else {
                continue;
            };
            last = Some(id);
            let mut tag = None;
            let mut limits = None;
            for pair in fields.chunks(2) {
                match (
                    pair.first().and_then(text).as_deref(),
                    pair.get(1).and_then(text),
                ) {
                    (Some("k"), Some(value)) => tag = Some(value),
                    (Some("l"), Some(value)) => limits = parse_limits(&value),
                    _ => {}
                }
            }
            if let (Some(tag), Some(limits)) = (tag, limits) {
                if keygate_contract::fleet::is_key_tag(&tag) {
                    announced.push(PublishedKey { tag, limits });
                }
            }
        }
    }
    (announced, last)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn limits_text(limits: &[Option<u64>; WINDOWS]) -> String {
    limits
        .iter()
        .map(|limit| limit.map_or(String::new(), |n| n.to_string()))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_limits(text: &str) -> Option<[Option<u64>; WINDOWS]> {
    let parts: Vec<&str> = text.split(',').collect();
    if parts.len() != WINDOWS {
        return None;
    }
    let mut limits = [None; WINDOWS];
    for (limit, part) in limits.iter_mut().zip(parts) {
        if !part.is_empty() {
            *limit = Some(part.parse().ok()?);
        }
    }
    Some(limits)
}

/// `raised` (ordered by window, bucket width and bucket, as `memory` lists them) cut into runs of
/// one bucket, at most `MAX_GROUP` proxies each.
fn bucket_groups(raised: &[Raise]) -> impl Iterator<Item = &[Raise]> {
    raised
        .chunk_by(|a, b| (a.window, a.bucket_ms, a.bucket) == (b.window, b.bucket_ms, b.bucket))
        .flat_map(|run| run.chunks(MAX_GROUP))
}

fn random_id() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness two replicas could share an id; the clock still tells most apart.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = crate::domain::clock::now_ms().to_le_bytes();
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

mod flush_thread;
#[cfg(test)]
mod tests;
