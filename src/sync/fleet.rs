//! The fleet-wide rate-limit sync: every `rate_limits.sync_interval`, one worker per Envoy (the
//! holder of the fleet lease) posts what this Envoy admitted per limited key and window bucket
//! since keys were last sent, and writes the answer (what the rest of the fleet admitted) into
//! the keys' counter slots, where the request path reads it with the local counts in the same
//! single read. No network call is ever made on the request path.
//!
//! Which keys: every worker notes the slots it counted an admitted request in (`Worker::touched`)
//! and hands them to a shared queue every tick; the lease holder drains it. Counts are read from
//! the slots at send time and are absolute, so a failed sync just puts its slots back in the
//! queue: the next one sends their then-current counts, and the control service never counts
//! anything twice.
//!
//! When the control service is down or slow the syncs fail (counted), remote counts age out
//! with their buckets, and each Envoy is back to enforcing its own count: today's behaviour.
//!
//! Which buckets: only those that can have changed since the last answered sync (its start,
//! less two intervals for slots handed over late), marked by `fleet::BUCKETS_HEADER`: a key
//! posted every second sends its newest bucket or two of each window, not the 30 of a minute
//! window. Every `FULL_POST_EVERY_MS`, after a sync that could not take every key, and when a
//! control service that lost its counts answers `fleet::RESEND_EVERY_BUCKET_STATUS`, a post
//! carries every bucket still inside its window.
//!
//! The post and its answer travel in the compact binary encoding (`contract::fleet::binary`)
//! unless `rate_limits.sync_encoding` says JSON; a control service older than that encoding
//! answers 415, and the VM then sends JSON for the rest of its life (`FleetOutcome::FellBackToJson`
//! is reported once). Answers are read by their first bytes, so a control service that ignores
//! `Accept` and answers JSON is understood too.
//!
//! `FleetSync` is the job (`sync/task.rs` runs it); its tests are in `tests.rs`.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use crate::config::{ControlConfig, RateLimitConfig, SyncEncoding};
use crate::host::Host;
use crate::limits::counters;
use crate::limits::touched::Touched;
use crate::limits::window::Windows;
use crate::sync::queue::Queue;
use crate::sync::task::{Call, CallError, Job, JobLease, Response, Start, Step};
use keygate_contract::fleet::{
    self, binary, FleetSyncPost, FleetSyncReply, KeyCounts, MAX_KEYS_PER_SYNC, WINDOWS,
};

pub const QUEUE_NAME: &str = "keygate.fleet.touched";
const LEASE_KEY: &str = "keygate.fleet.lease";
/// This Envoy's identity towards the control service, shared by its workers, so the lease can
/// move between workers without the Envoy's own counts looking like another Envoy's.
const PROXY_ID_KEY: &str = "keygate.fleet.proxy";
/// When the remote counts were last brought up to date (u64 ms, little-endian).
const SYNCED_AT_KEY: &str = "keygate.fleet.synced_at";
/// When the last answered sync started, and the last answered one that posted every bucket
/// (u64 ms, little-endian; 0: the next post carries every bucket).
const ANSWERED_START_KEY: &str = "keygate.fleet.answered_start";
const FULL_POST_KEY: &str = "keygate.fleet.full_post";
/// How often a post carries every bucket anyway, so a control service that missed a bucket
/// (a replica that never saw this Envoy's older posts) holds it again within this time.
const FULL_POST_EVERY_MS: u64 = 60_000;
/// Largest answer read into the VM (5,000 keys of 3 windows of 31 buckets fit comfortably).
pub const MAX_REPLY_BYTES: usize = 8 << 20;
/// Queue items taken per sync (each a list of slots from one worker's tick).
const MAX_ITEMS_PER_SYNC: usize = 4096;
/// What the control service answers a body type it does not take with.
const UNSUPPORTED_MEDIA_TYPE: u32 = 415;

/// Why a sync failed; limits are enforced per Envoy until one works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetError {
    /// The sync was not made, or not answered in time.
    Call(CallError),
    /// The call ended without a response.
    NoResponse,
    /// A status other than 2xx.
    Status(u32),
    /// A 2xx whose body is not a sync reply (or too large to read).
    NotAReply,
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::Call(CallError::TimedOut) => f.write_str("fleet sync timed out"),
            FleetError::Call(error) => write!(f, "{error}"),
            FleetError::NoResponse => f.write_str("fleet sync answered nothing"),
            FleetError::Status(status) => write!(f, "fleet sync answered {status}"),
            FleetError::NotAReply => f.write_str("fleet sync answer is not a sync reply"),
        }
    }
}

impl std::error::Error for FleetError {}

/// What happened to a sync, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetOutcome {
    Synced {
        keys_sent: usize,
        keys_updated: usize,
        keys_skipped: usize,
    },
    Failed(FleetError),
    /// The control service refused the binary post (415: it predates the encoding); the same
    /// keys went out again at once in JSON, as every later sync of this VM will.
    FellBackToJson,
    /// The control service holds no counts of this Envoy (it restarted): the same keys went
    /// out again at once with every bucket.
    AskedForEveryBucket,
}

/// A sync under way: the slots whose counts it sent, when it started, and whether it sent every
/// bucket of them (`false`: only the changed ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    slots: Vec<u64>,
    started_ms: u64,
    every_bucket: bool,
}

/// The fleet sync of one VM.
pub struct FleetSync {
    me: u64,
    control: ControlConfig,
    path: String,
    interval: Duration,
    windows: Windows,
    queue: Box<dyn Queue>,
    /// Rate-limit slots that exist, as this worker last saw them (`note_slot_count`).
    slots: u64,
    /// How posts are sent: as configured, until a 415 turns binary into JSON.
    encoding: SyncEncoding,
}

fn encode_slots(slots: &BTreeSet<u64>) -> Vec<u8> {
    slots.iter().flat_map(|slot| slot.to_le_bytes()).collect()
}

fn decode_slots(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes
        .chunks_exact(8)
        .filter_map(|chunk| chunk.try_into().ok().map(u64::from_le_bytes))
}

/// A sync answer in either encoding, told apart by its first bytes.
fn read_reply(body: &[u8]) -> Option<FleetSyncReply> {
    if binary::is_binary(body) {
        binary::decode_reply(body).ok()
    } else {
        serde_json::from_slice(body).ok()
    }
}

/// `(owner, seed)` of a slot from a key tag (`contract::fleet::key_tag`).
fn owner_and_seed(tag: &str) -> Option<(u64, u64)> {
    if !fleet::is_key_tag(tag) {
        return None;
    }
    let owner = u64::from_str_radix(tag.get(..16)?, 16).ok()?;
    let seed = u64::from_str_radix(tag.get(16..)?, 16).ok()?;
    Some((owner, seed))
}

fn tag_of(owner: u64, seed: u64) -> String {
    format!("{owner:016x}{seed:016x}")
}

/// The Envoy's proxy id, made by the first lease holder.
fn proxy_id(host: &dyn Host, me: u64) -> String {
    if let Some(id) = host
        .get_shared(PROXY_ID_KEY)
        .0
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| fleet::is_key_tag(&format!("{id:0>32}")))
    {
        return id;
    }
    let id = format!("{me:016x}");
    // Only the lease holder writes it, so an unconditional write cannot race.
    let _ = host.set_shared(PROXY_ID_KEY, id.as_bytes(), None);
    id
}

fn shared_ms(host: &dyn Host, key: &str) -> Option<u64> {
    host.get_shared(key)
        .0
        .and_then(|bytes| bytes.get(..8)?.try_into().ok().map(u64::from_le_bytes))
}

/// Seconds since the last successful sync (0 before the first), for the age metric.
pub fn remote_age_seconds(host: &dyn Host) -> u64 {
    shared_ms(host, SYNCED_AT_KEY).map_or(0, |synced_at| {
        host.now_ms().saturating_sub(synced_at) / 1000
    })
}

impl FleetSync {
    pub fn new(
        me: u64,
        control: &ControlConfig,
        rate_limits: &RateLimitConfig,
        queue: Box<dyn Queue>,
    ) -> FleetSync {
        FleetSync {
            me,
            control: control.clone(),
            path: rate_limits.sync_path.clone(),
            interval: rate_limits.sync_interval,
            windows: rate_limits.windows,
            queue,
            slots: 0,
            encoding: rate_limits.sync_encoding,
        }
    }

    /// Hands the slots a worker counted in to the queue: every worker, every tick.
    pub fn hand_over(&self, touched: &mut Touched) {
        self.hand_over_slots(touched.take_sorted());
    }

    /// Queues slots taken from a worker's touched set. Apart from `hand_over` so that a set
    /// behind a lock is held only while the slots are taken, not while they are encoded.
    pub fn hand_over_slots(&self, slots: Vec<u64>) {
        if !slots.is_empty() {
            let slots: BTreeSet<u64> = slots.into_iter().collect();
            self.queue.enqueue(&encode_slots(&slots));
        }
    }

    /// The number of rate-limit slots the worker knows of, which an answer is written with.
    pub fn note_slot_count(&mut self, slots: u64) {
        self.slots = slots;
    }

    fn requeue(&self, slots: &[u64]) {
        if !slots.is_empty() {
            let slots: BTreeSet<u64> = slots.iter().copied().collect();
            self.queue.enqueue(&encode_slots(&slots));
        }
    }

    /// Buckets that started at or after this (Unix ms) are all a post needs to carry; `None`:
    /// every bucket inside the window (first post, one due by `FULL_POST_EVERY_MS`, or after a
    /// sync that left keys for later).
    fn changed_since(&self, host: &dyn Host, now: u64) -> Option<u64> {
        let full_post = shared_ms(host, FULL_POST_KEY).filter(|&at| at > 0)?;
        if now.saturating_sub(full_post) >= FULL_POST_EVERY_MS {
            return None;
        }
        // A slot counted in just before the last answered sync started may have been handed
        // over after it (workers hand over every tick, at most half an interval): two
        // intervals back covers it, and a sync that went to another replica in between.
        let margin = 2 * self.interval.as_millis() as u64;
        shared_ms(host, ANSWERED_START_KEY).map(|start| start.saturating_sub(margin))
    }

    /// The keys of `slots` with counts still inside a window (at most `MAX_KEYS_PER_SYNC`) and
    /// of buckets from `since` on (`changed_since`), the slots they were read from, and the
    /// slots left over for the next sync.
    fn read_keys(
        &self,
        host: &dyn Host,
        slots: impl IntoIterator<Item = u64>,
        now: u64,
        since: Option<u64>,
    ) -> (Vec<KeyCounts>, Vec<u64>, BTreeSet<u64>) {
        let mut keys = Vec::new();
        let mut sent = Vec::new();
        let mut later = BTreeSet::new();
        for slot in slots {
            if keys.len() >= MAX_KEYS_PER_SYNC {
                later.insert(slot);
                continue;
            }
            let Some(state) = counters::read_slot(host, slot) else {
                continue;
            };
            let mut counts = state.local_buckets(&self.windows, now);
            if let Some(since) = since {
                for (window, buckets) in counts.iter_mut().enumerate() {
                    let first = since / self.windows.bucket_width_ms(window).max(1);
                    buckets.retain(|&(bucket, _)| bucket >= first);
                }
            }
            if counts.iter().all(Vec::is_empty) {
                continue;
            }
            keys.push(KeyCounts {
                key: tag_of(state.owner, state.seed),
                limits: state.limits.map(|limit| (limit > 0).then_some(limit)),
                counts,
            });
            sent.push(slot);
        }
        (keys, sent, later)
    }

    /// The sync call for `keys`, in this VM's encoding; `changed_only` marks a post of only
    /// the buckets that can have changed (`fleet::BUCKETS_HEADER`).
    fn post(&self, host: &dyn Host, keys: Vec<KeyCounts>, changed_only: bool) -> Call {
        let mut call = self.encoded_post(host, keys);
        if changed_only {
            call.headers
                .push((fleet::BUCKETS_HEADER.into(), fleet::BUCKETS_CHANGED.into()));
        }
        call
    }

    fn encoded_post(&self, host: &dyn Host, keys: Vec<KeyCounts>) -> Call {
        let post = FleetSyncPost {
            proxy_id: proxy_id(host, self.me),
            bucket_ms: [0, 1, 2].map(|window| self.windows.bucket_width_ms(window)),
            window_ms: self.windows.lengths_ms,
            keys,
        };
        let binary_body = match self.encoding {
            // Tags made by `tag_of` always encode; should one not, the post goes as JSON.
            SyncEncoding::Binary => binary::encode_post(&post).ok(),
            SyncEncoding::Json => None,
        };
        if let Some(body) = binary_body {
            return Call::post(
                &self.control,
                &self.path,
                binary::MEDIA_TYPE,
                Some(binary::ACCEPT),
                body,
            );
        }
        let body = serde_json::to_vec(&post).unwrap_or_default();
        Call::post_json(&self.control, &self.path, body)
    }

    /// Reads `slots` and posts them: every bucket unless `since` (`changed_since`) says from
    /// when. Slots beyond one sync go back to the queue, and the next post carries every
    /// bucket (those slots' changes may predate this sync).
    fn send(
        &self,
        host: &dyn Host,
        slots: impl IntoIterator<Item = u64>,
        since: Option<u64>,
    ) -> (Call, Sent) {
        let now = host.now_ms();
        let (keys, sent, later) = self.read_keys(host, slots, now, since);
        if !later.is_empty() {
            self.queue.enqueue(&encode_slots(&later));
            // Only the lease holder writes it.
            let _ = host.set_shared(FULL_POST_KEY, &0u64.to_le_bytes(), None);
        }
        let sent = Sent {
            slots: sent,
            started_ms: now,
            every_bucket: since.is_none(),
        };
        (self.post(host, keys, since.is_some()), sent)
    }

    /// A failed sync puts its slots back: the next one sends their then-current counts.
    fn fail(&self, sent: &[u64], error: FleetError) -> Step<Sent, FleetOutcome> {
        self.requeue(sent);
        Step::Done {
            outcome: FleetOutcome::Failed(error),
            next_due_ms: None,
        }
    }
}

impl Job for FleetSync {
    type Outcome = FleetOutcome;
    type Pending = Sent;
    const LEASE: JobLease = JobLease {
        key: LEASE_KEY,
        sticky: false,
    };

    fn call_timeout(&mut self, _host: &dyn Host) -> Duration {
        self.control.timeout
    }

    /// Drains the queue and posts the current counts of the slots in it.
    fn start(&mut self, host: &dyn Host, _fence: u64) -> Start<Sent, FleetOutcome> {
        let mut slots = BTreeSet::new();
        for _ in 0..MAX_ITEMS_PER_SYNC {
            let Some(item) = self.queue.dequeue() else {
                break;
            };
            slots.extend(decode_slots(&item));
        }
        let since = self.changed_since(host, host.now_ms());
        let (call, sent) = self.send(host, slots, since);
        Start::Call {
            call,
            pending: sent,
            report: None,
        }
    }

    fn max_body_bytes(&self) -> usize {
        MAX_REPLY_BYTES
    }

    /// On success, writes the rest of the fleet's counts into the keys' slots.
    fn on_response(
        &mut self,
        host: &dyn Host,
        sent: Sent,
        response: Response<'_>,
    ) -> Step<Sent, FleetOutcome> {
        match response.status {
            Some(200..=299) => {}
            Some(UNSUPPORTED_MEDIA_TYPE) if self.encoding == SyncEncoding::Binary => {
                self.encoding = SyncEncoding::Json;
                let since = if sent.every_bucket {
                    None
                } else {
                    self.changed_since(host, host.now_ms())
                };
                let (call, sent) = self.send(host, sent.slots, since);
                return Step::Next {
                    call,
                    pending: sent,
                    outcome: FleetOutcome::FellBackToJson,
                };
            }
            Some(status)
                if status == u32::from(fleet::RESEND_EVERY_BUCKET_STATUS) && !sent.every_bucket =>
            {
                let (call, sent) = self.send(host, sent.slots, None);
                return Step::Next {
                    call,
                    pending: sent,
                    outcome: FleetOutcome::AskedForEveryBucket,
                };
            }
            Some(status) => return self.fail(&sent.slots, FleetError::Status(status)),
            None => return self.fail(&sent.slots, FleetError::NoResponse),
        }
        let Some(reply) = response.body.and_then(read_reply) else {
            return self.fail(&sent.slots, FleetError::NotAReply);
        };
        let now = host.now_ms();
        let (mut updated, mut skipped) = (0, 0);
        for key in reply.keys.iter().take(MAX_KEYS_PER_SYNC) {
            // One bad entry is skipped, never the whole answer.
            let usable = fleet::validate_counts("key", key).is_ok();
            match owner_and_seed(&key.key).filter(|_| usable) {
                Some(owner_and_seed) => {
                    let counts: [Vec<(u64, u64)>; WINDOWS] = key.counts.clone();
                    if counters::set_remote(
                        host,
                        owner_and_seed,
                        &counts,
                        &self.windows,
                        self.slots,
                        now,
                    ) {
                        updated += 1;
                    } else {
                        skipped += 1;
                    }
                }
                None => skipped += 1,
            }
        }
        // Only the lease holder writes them.
        let _ = host.set_shared(SYNCED_AT_KEY, &now.to_le_bytes(), None);
        let _ = host.set_shared(ANSWERED_START_KEY, &sent.started_ms.to_le_bytes(), None);
        if sent.every_bucket {
            let _ = host.set_shared(FULL_POST_KEY, &sent.started_ms.to_le_bytes(), None);
        }
        Step::Done {
            outcome: FleetOutcome::Synced {
                keys_sent: sent.slots.len(),
                keys_updated: updated,
                keys_skipped: skipped,
            },
            next_due_ms: Some(now + self.interval.as_millis() as u64),
        }
    }

    fn on_failure(&mut self, _host: &dyn Host, sent: Sent, error: CallError) -> FleetOutcome {
        self.requeue(&sent.slots);
        FleetOutcome::Failed(FleetError::Call(error))
    }
}

#[cfg(test)]
mod tests;
