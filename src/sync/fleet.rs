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

use std::collections::BTreeSet;
use std::time::Duration;

use crate::host::Host;
use crate::limits::counters;
use crate::limits::touched::Touched;
use crate::limits::window::Windows;
use crate::sync::lease;
use crate::sync::queue::Queue;
use keygate_contract::fleet::{
    self, FleetSyncPost, FleetSyncReply, KeyCounts, MAX_KEYS_PER_SYNC, WINDOWS,
};

pub const QUEUE_NAME: &str = "keygate.fleet.touched";
const LEASE_KEY: &str = "keygate.fleet.lease";
/// This Envoy's identity towards the control service, shared by its workers, so the lease can
/// move between workers without the Envoy's own counts looking like another Envoy's.
const PROXY_ID_KEY: &str = "keygate.fleet.proxy";
/// When the remote counts were last brought up to date (u64 ms, little-endian).
const SYNCED_AT_KEY: &str = "keygate.fleet.synced_at";
const LEASE_MARGIN_MS: u64 = 2_000;
/// Largest answer read into the VM (5,000 keys of 3 windows of 31 buckets fit comfortably).
pub const MAX_REPLY_BYTES: usize = 8 << 20;
/// Queue items taken per sync (each a list of slots from one worker's tick).
const MAX_ITEMS_PER_SYNC: usize = 4096;

/// A POST to make to the control service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetCall {
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// What happened to a sync, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetOutcome {
    Ignored,
    Synced {
        keys_sent: usize,
        keys_updated: usize,
        keys_skipped: usize,
    },
    Failed {
        reason: String,
    },
}

#[derive(Debug)]
struct InFlight {
    token: u32,
    deadline_ms: u64,
    slots: Vec<u64>,
}

/// Per-VM driver of the fleet sync.
#[derive(Debug)]
pub struct FleetSync {
    me: u64,
    interval: Duration,
    timeout: Duration,
    in_flight: Option<InFlight>,
}

fn encode_slots(slots: &BTreeSet<u64>) -> Vec<u8> {
    slots.iter().flat_map(|slot| slot.to_le_bytes()).collect()
}

fn decode_slots(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes
        .chunks_exact(8)
        .filter_map(|chunk| chunk.try_into().ok().map(u64::from_le_bytes))
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

/// Seconds since the last successful sync (0 before the first), for the age metric.
pub fn remote_age_seconds(host: &dyn Host) -> u64 {
    host.get_shared(SYNCED_AT_KEY)
        .0
        .and_then(|bytes| bytes.get(..8)?.try_into().ok().map(u64::from_le_bytes))
        .map_or(0, |synced_at| {
            host.now_ms().saturating_sub(synced_at) / 1000
        })
}

impl FleetSync {
    pub fn new(me: u64, interval: Duration, timeout: Duration) -> FleetSync {
        FleetSync {
            me,
            interval,
            timeout,
            in_flight: None,
        }
    }

    fn requeue(queue: &dyn Queue, slots: &[u64]) {
        if !slots.is_empty() {
            let slots: BTreeSet<u64> = slots.iter().copied().collect();
            queue.enqueue(&encode_slots(&slots));
        }
    }

    fn fail(&mut self, host: &dyn Host, queue: &dyn Queue, reason: String) -> FleetOutcome {
        lease::release(host, LEASE_KEY, self.me, host.now_ms(), None);
        if let Some(in_flight) = self.in_flight.take() {
            Self::requeue(queue, &in_flight.slots);
        }
        FleetOutcome::Failed { reason }
    }

    /// Called on every tick: hands this worker's touched slots to the queue, and when this
    /// worker wins the lease and a sync is due, builds it.
    pub fn poll(
        &mut self,
        host: &dyn Host,
        queue: &dyn Queue,
        touched: &mut Touched,
        windows: &Windows,
    ) -> (Option<FleetCall>, Option<FleetOutcome>) {
        if !touched.is_empty() {
            let slots: BTreeSet<u64> = touched.take_sorted().into_iter().collect();
            queue.enqueue(&encode_slots(&slots));
        }
        let now = host.now_ms();
        if let Some(in_flight) = &self.in_flight {
            if now < in_flight.deadline_ms {
                return (None, None);
            }
            let outcome = self.fail(host, queue, "fleet sync timed out".into());
            return (None, Some(outcome));
        }
        let deadline_ms = now + self.timeout.as_millis() as u64 + 1_000;
        if lease::try_claim(host, LEASE_KEY, self.me, now, deadline_ms + LEASE_MARGIN_MS).is_none()
        {
            return (None, None);
        }
        let mut slots = BTreeSet::new();
        for _ in 0..MAX_ITEMS_PER_SYNC {
            let Some(item) = queue.dequeue() else { break };
            slots.extend(decode_slots(&item));
        }
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
            let counts = state.local_buckets(windows, now);
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
        if !later.is_empty() {
            queue.enqueue(&encode_slots(&later));
        }
        let post = FleetSyncPost {
            proxy_id: proxy_id(host, self.me),
            bucket_ms: [0, 1, 2].map(|window| windows.bucket_width_ms(window)),
            window_ms: windows.lengths_ms,
            keys,
        };
        self.in_flight = Some(InFlight {
            token: 0,
            deadline_ms,
            slots: sent,
        });
        let body = serde_json::to_vec(&post).unwrap_or_default();
        (
            Some(FleetCall {
                body,
                timeout: self.timeout,
            }),
            None,
        )
    }

    pub fn dispatched(&mut self, token: u32) {
        if let Some(in_flight) = &mut self.in_flight {
            in_flight.token = token;
        }
    }

    pub fn dispatch_failed(
        &mut self,
        host: &dyn Host,
        queue: &dyn Queue,
        reason: String,
    ) -> FleetOutcome {
        self.fail(host, queue, reason)
    }

    pub fn awaits(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.token == token)
    }

    /// The control service answered call `token` with `status` and `body` (`None`: no
    /// response). On success, writes the rest of the fleet's counts into the keys' slots.
    pub fn on_response(
        &mut self,
        host: &dyn Host,
        queue: &dyn Queue,
        token: u32,
        (status, body): (Option<u32>, Option<&[u8]>),
        windows: &Windows,
        slots: u64,
    ) -> FleetOutcome {
        if !self.awaits(token) {
            return FleetOutcome::Ignored;
        }
        if !matches!(status, Some(200..=299)) {
            return self.fail(
                host,
                queue,
                format!(
                    "fleet sync answered {}",
                    status.map_or("nothing".into(), |s| s.to_string())
                ),
            );
        }
        let Some(reply) = body.and_then(|body| serde_json::from_slice::<FleetSyncReply>(body).ok())
        else {
            return self.fail(host, queue, "fleet sync answer is not a sync reply".into());
        };
        let now = host.now_ms();
        let (mut updated, mut skipped) = (0, 0);
        for key in reply.keys.iter().take(MAX_KEYS_PER_SYNC) {
            // One bad entry is skipped, never the whole answer.
            let usable = fleet::validate_counts("key", key).is_ok();
            match owner_and_seed(&key.key).filter(|_| usable) {
                Some(owner_and_seed) => {
                    let counts: [Vec<(u64, u64)>; WINDOWS] = key.counts.clone();
                    if counters::set_remote(host, owner_and_seed, &counts, windows, slots, now) {
                        updated += 1;
                    } else {
                        skipped += 1;
                    }
                }
                None => skipped += 1,
            }
        }
        let keys_sent = self.in_flight.take().map_or(0, |f| f.slots.len());
        // Only the lease holder writes it.
        let _ = host.set_shared(SYNCED_AT_KEY, &now.to_le_bytes(), None);
        lease::release(
            host,
            LEASE_KEY,
            self.me,
            now,
            Some(now + self.interval.as_millis() as u64),
        );
        FleetOutcome::Synced {
            keys_sent,
            keys_updated: updated,
            keys_skipped: skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;
    use crate::limits::counters::{admit, grow, owner_and_seed as slot_key_of, Admission};
    use crate::sync::queue::FakeQueue;
    use keygate_contract::key_hash::digest_key;
    use keygate_contract::snapshot::Limits;

    const SLOTS: u64 = 64;

    fn per_minute(limit: u64) -> Limits {
        Limits {
            per_minute: Some(limit),
            per_hour: None,
            per_day: None,
            concurrent: None,
        }
    }

    fn admit_one(host: &FakeHost, secret: &str, limit: u64) -> (Admission, u64) {
        let admission = admit(
            host,
            slot_key_of(&digest_key(secret)),
            &per_minute(limit),
            &Windows::default(),
            SLOTS,
            host.now_ms(),
        );
        let slot = match admission {
            Admission::Admitted { slot, .. } => slot,
            _ => u64::MAX,
        };
        (admission, slot)
    }

    #[test]
    fn a_sync_sends_touched_keys_and_applies_the_rest_of_the_fleet() {
        let host = FakeHost::at(1_000_000);
        let queue = FakeQueue::default();
        let windows = Windows::default();
        grow(&host, SLOTS, SLOTS, 0).unwrap();
        let mut touched = Touched::default();
        for _ in 0..3 {
            let (_, slot) = admit_one(&host, "pk_live_busy", 10);
            touched.insert(slot);
        }
        let mut sync = FleetSync::new(7, Duration::from_secs(1), Duration::from_secs(2));
        let (call, _) = sync.poll(&host, &queue, &mut touched, &windows);
        let call = call.expect("the first worker takes the lease and syncs");
        assert!(touched.is_empty());
        let post: FleetSyncPost = serde_json::from_slice(&call.body).unwrap();
        assert!(fleet::validate_post(&post).is_ok(), "{post:?}");
        assert_eq!(post.keys.len(), 1);
        let tag = fleet::key_tag(&digest_key("pk_live_busy"));
        assert_eq!(post.keys[0].key, tag);
        assert_eq!(post.keys[0].limits, [Some(10), None, None]);
        let bucket = 1_000_000 / 2_000;
        assert_eq!(post.keys[0].counts[0], vec![(bucket, 3)]);
        sync.dispatched(5);
        // The rest of the fleet admitted 6; another key is hot elsewhere and new here.
        let other = fleet::key_tag(&digest_key("pk_live_elsewhere"));
        let reply = serde_json::json!({"keys": [
            {"key": tag, "counts": [[[bucket, 6]], [], []]},
            {"key": other, "counts": [[[bucket, 10]], [], []]},
            {"key": "not-a-tag", "counts": [[], [], []]},
        ], "later": 1});
        let body = serde_json::to_vec(&reply).unwrap();
        let outcome = sync.on_response(&host, &queue, 5, (Some(200), Some(&body)), &windows, SLOTS);
        assert_eq!(
            outcome,
            FleetOutcome::Synced {
                keys_sent: 1,
                keys_updated: 2,
                keys_skipped: 1
            }
        );
        // 3 here + 6 elsewhere: one more fits in 10, then 429.
        assert!(matches!(
            admit_one(&host, "pk_live_busy", 10).0,
            Admission::Admitted { .. }
        ));
        assert!(matches!(
            admit_one(&host, "pk_live_busy", 10).0,
            Admission::Refused { .. }
        ));
        // The key never seen here is refused at once: the fleet has used its 10.
        assert!(matches!(
            admit_one(&host, "pk_live_elsewhere", 10).0,
            Admission::Refused { .. }
        ));
    }

    #[test]
    fn a_failed_sync_puts_its_keys_back_and_the_next_sends_current_counts() {
        let host = FakeHost::at(1_000_000);
        let queue = FakeQueue::default();
        let windows = Windows::default();
        grow(&host, SLOTS, SLOTS, 0).unwrap();
        let mut touched = Touched::default();
        let (_, slot) = admit_one(&host, "pk_live_retry", 100);
        touched.insert(slot);
        let mut sync = FleetSync::new(7, Duration::from_secs(1), Duration::from_secs(2));
        let (call, _) = sync.poll(&host, &queue, &mut touched, &windows);
        assert!(call.is_some());
        sync.dispatched(1);
        let outcome = sync.on_response(&host, &queue, 1, (Some(503), None), &windows, SLOTS);
        assert!(matches!(outcome, FleetOutcome::Failed { .. }));
        // Meanwhile one more request; after the backoff the retry carries both.
        admit_one(&host, "pk_live_retry", 100);
        host.now.set(host.now.get() + 1_000);
        let (call, _) = sync.poll(&host, &queue, &mut Touched::default(), &windows);
        let post: FleetSyncPost = serde_json::from_slice(&call.unwrap().body).unwrap();
        let total: u64 = post.keys[0].counts[0].iter().map(|(_, count)| count).sum();
        assert_eq!(total, 2);
    }

    #[test]
    fn one_worker_syncs_at_a_time_and_the_proxy_id_outlives_the_holder() {
        let host = FakeHost::at(5_000);
        let queue = FakeQueue::default();
        let windows = Windows::default();
        let mut first = FleetSync::new(1, Duration::from_secs(1), Duration::from_secs(2));
        let mut second = FleetSync::new(2, Duration::from_secs(1), Duration::from_secs(2));
        let (call, _) = first.poll(&host, &queue, &mut Touched::default(), &windows);
        let id: FleetSyncPost = serde_json::from_slice(&call.unwrap().body).unwrap();
        assert!(second
            .poll(&host, &queue, &mut Touched::default(), &windows)
            .0
            .is_none());
        first.dispatched(3);
        let body = br#"{"keys":[]}"#;
        first.on_response(&host, &queue, 3, (Some(200), Some(body)), &windows, 0);
        host.now.set(host.now.get() + 1_000);
        assert_eq!(remote_age_seconds(&host), 1);
        let (call, _) = second.poll(&host, &queue, &mut Touched::default(), &windows);
        let again: FleetSyncPost = serde_json::from_slice(&call.unwrap().body).unwrap();
        assert_eq!(again.proxy_id, id.proxy_id);
    }
}
