//! A worker's running tally of requests per key and hour, handed to the usage queue every tick
//! (`usage.rs` posts it) as a `batch::UsageBatch`.

use foldhash::fast::FixedState;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::policy::decision::DenyCode;
use crate::policy::routes::RouteTable;
use crate::sync::batch::{UsageBatch, UsageReport};
use keygate_contract::usage::{
    RouteCounts, UsageEvent, MAX_EVENTS_PER_REPORT, MAX_TOP_IPS, UPSTREAM_CLASSES,
};
use keygate_contract::{ip_sketch, latency};
use std::net::IpAddr;

/// A route's requests with one outcome: (route index + 1, 0 for none; outcome: 0 allowed,
/// else 1 + the denial code's index; count).
type RouteCount = (u16, u8, u64);

#[derive(Debug, Clone, Default)]
struct HourCounts {
    hour_start: i64,
    allowed: u64,
    denied: [u64; DenyCode::ALL.len()],
    /// Allowed requests by `UPSTREAM_CLASSES` index, counted when the stream ends.
    upstream: [u64; UPSTREAM_CLASSES.len()],
    /// Durations: (latency bucket, count), few per hour, so a short list.
    latency: Vec<(u8, u64)>,
    routes: Vec<RouteCount>,
    events: Vec<UsageEvent>,
    events_dropped: u64,
    /// Client addresses: a sparse `ip_sketch`, and the most frequent few (Misra-Gries: an
    /// address not held takes a free place, or every held count drops by one).
    ip_sketch: Vec<(u8, u8)>,
    top_ips: Vec<(IpAddr, u64)>,
}

#[derive(Debug)]
struct KeyTally {
    /// The key id, shared with the requests still in flight that will finish in this tally.
    id: Arc<str>,
    hours: Vec<HourCounts>,
}

/// A worker's running tally, per key id and hour.
#[derive(Debug, Default)]
pub struct Tally {
    by_key: HashMap<Arc<str>, KeyTally, FixedState>,
    /// Address sampling (`address_weight`): the hour it is for, the keys (by hash) whose
    /// address was read in it, and allowed requests not read since the last read.
    sampled_hour: i64,
    sampled_keys: HashSet<u64, FixedState>,
    unread: u64,
}

/// Allowed requests per address read, after each key's first of the hour. Reading the client
/// address is a property read, about 5 µs of Envoy CPU (docs/benchmarks.md): reading one in 16
/// brings its share of the log phase to about 0.3 µs a request.
pub const ADDRESS_SAMPLE_EVERY: u64 = 16;

/// `2026-11-23T21:00:00Z` for an hour start in Unix seconds.
pub fn format_hour(hour_start: i64) -> String {
    let days = hour_start.div_euclid(86_400);
    let hour = hour_start.rem_euclid(86_400) / 3600;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:00:00Z")
}

impl HourCounts {
    fn add_route(&mut self, route: Option<usize>, outcome: u8) {
        let route = route
            .and_then(|index| u16::try_from(index + 1).ok())
            .unwrap_or(0);
        match self
            .routes
            .iter_mut()
            .find(|(r, o, _)| *r == route && *o == outcome)
        {
            Some((_, _, count)) => *count += 1,
            None => self.routes.push((route, outcome, 1)),
        }
    }

    fn into_report(self, key_id: &str, routes: &RouteTable) -> UsageReport {
        let code_name = |index: usize| DenyCode::ALL.get(index).map(|code| code.as_str());
        let denied = DenyCode::ALL
            .iter()
            .filter(|code| self.denied[code.index()] > 0)
            .map(|code| (code.as_str().to_string(), self.denied[code.index()]))
            .collect();
        let upstream = UPSTREAM_CLASSES
            .iter()
            .zip(self.upstream)
            .filter(|(_, count)| *count > 0)
            .map(|(class, count)| (class.to_string(), count))
            .collect();
        let mut by_route: BTreeMap<String, RouteCounts> = BTreeMap::new();
        for (route, outcome, count) in self.routes {
            let name = routes.name(route.checked_sub(1).map(usize::from));
            let counts = by_route.entry(name.to_string()).or_default();
            match outcome
                .checked_sub(1)
                .and_then(|index| code_name(index.into()))
            {
                Some(code) => *counts.denied.entry(code.to_string()).or_default() += count,
                None => counts.allowed += count,
            }
        }
        UsageReport {
            key_id: key_id.to_string(),
            hour: format_hour(self.hour_start),
            allowed: self.allowed,
            denied,
            upstream,
            latency_buckets: self
                .latency
                .into_iter()
                .map(|(bucket, count)| (usize::from(bucket), count))
                .collect(),
            routes: by_route,
            events: self.events,
            events_dropped: self.events_dropped,
            ip_sketch: self.ip_sketch.into_iter().collect(),
            top_ips: self
                .top_ips
                .into_iter()
                .map(|(ip, count)| (ip.to_string(), count))
                .collect(),
        }
    }
}

impl Tally {
    /// The counts of `key_id` in the hour of `now`, created when absent (`None` cannot happen:
    /// the key was just inserted; it is an `Option` only so that nothing here can panic).
    fn hour(&mut self, key_id: &str, now: i64) -> Option<(&Arc<str>, &mut HourCounts)> {
        let hour_start = now - now.rem_euclid(3600);
        // Two lookups when present (the borrow checker cannot return from a first `get_mut`),
        // both with the fast hash.
        if !self.by_key.contains_key(key_id) {
            let id: Arc<str> = Arc::from(key_id);
            self.by_key.insert(
                id.clone(),
                KeyTally {
                    id,
                    hours: Vec::new(),
                },
            );
        }
        let tally = self.by_key.get_mut(key_id)?;
        let index = match tally.hours.iter().position(|h| h.hour_start == hour_start) {
            Some(index) => index,
            None => {
                tally.hours.push(HourCounts {
                    hour_start,
                    ..HourCounts::default()
                });
                tally.hours.len() - 1
            }
        };
        Some((&tally.id, tally.hours.get_mut(index)?))
    }

    /// Counts one request of `key_id` at `now` (Unix seconds) on `route`: allowed, or denied
    /// with `code`. Returns the key id to finish an allowed request with ([`Tally::finish`]), a
    /// shared one, so a request holds it without copying.
    pub fn record(
        &mut self,
        key_id: &str,
        now: i64,
        route: Option<usize>,
        denied: Option<DenyCode>,
    ) -> Option<Arc<str>> {
        let (id, counts) = self.hour(key_id, now)?;
        match denied {
            None => {
                counts.allowed += 1;
                counts.add_route(route, 0);
            }
            Some(code) => {
                counts.denied[code.index()] += 1;
                counts.add_route(route, code.index() as u8 + 1);
            }
        }
        Some(id.clone())
    }

    /// Counts what became of an allowed request of `key_id` that started at `started` (Unix
    /// seconds; counted in that hour): the upstream's class (an `UPSTREAM_CLASSES` index) and
    /// how long the request took.
    pub fn finish(&mut self, key_id: &str, started: i64, class: usize, duration_ms: u64) {
        let Some((_, counts)) = self.hour(key_id, started) else {
            return;
        };
        if let Some(count) = counts.upstream.get_mut(class) {
            *count += 1;
        }
        let bucket = latency::bucket_of(duration_ms) as u8;
        match counts.latency.iter_mut().find(|(b, _)| *b == bucket) {
            Some((_, count)) => *count += 1,
            None => counts.latency.push((bucket, 1)),
        }
    }

    /// Whether to read the address of an allowed request of `key_id` at `now`, and how many
    /// requests it then stands for: the key's first in the hour (on this worker) always, then
    /// one in [`ADDRESS_SAMPLE_EVERY`] of every key's.
    pub fn address_weight(&mut self, key_id: &str, now: i64) -> Option<u64> {
        let hour = now - now.rem_euclid(3600);
        if hour != self.sampled_hour {
            self.sampled_hour = hour;
            self.sampled_keys.clear();
            self.unread = 0;
        }
        if self
            .sampled_keys
            .insert(FixedState::default().hash_one(key_id))
        {
            return Some(1);
        }
        self.unread += 1;
        if self.unread < ADDRESS_SAMPLE_EVERY {
            return None;
        }
        Some(std::mem::take(&mut self.unread))
    }

    /// Notes that `weight` requests of `key_id` at `now` came from `ip` (distinct addresses,
    /// top few).
    pub fn saw(&mut self, key_id: &str, now: i64, ip: IpAddr, weight: u64) {
        let Some((_, counts)) = self.hour(key_id, now) else {
            return;
        };
        let ip = keygate_contract::fields::canonical_ip(ip);
        ip_sketch::raise(&mut counts.ip_sketch, ip_sketch::register_of(ip));
        if let Some((_, count)) = counts.top_ips.iter_mut().find(|(held, _)| *held == ip) {
            *count += weight;
        } else if counts.top_ips.len() < MAX_TOP_IPS {
            counts.top_ips.push((ip, weight));
        } else {
            counts
                .top_ips
                .iter_mut()
                .for_each(|(_, count)| *count = count.saturating_sub(weight));
            counts.top_ips.retain(|(_, count)| *count > 0);
        }
    }

    /// Whether another event of `key_id` at `now` would be kept (so its details are worth
    /// gathering); when not, it is counted as dropped.
    pub fn wants_event(&mut self, key_id: &str, now: i64) -> bool {
        let Some((_, counts)) = self.hour(key_id, now) else {
            return false;
        };
        if counts.events.len() < MAX_EVENTS_PER_REPORT {
            return true;
        }
        counts.events_dropped += 1;
        false
    }

    /// Keeps an event of `key_id` (after [`Tally::wants_event`] said yes).
    pub fn event(&mut self, key_id: &str, now: i64, event: UsageEvent) {
        let Some((_, counts)) = self.hour(key_id, now) else {
            return;
        };
        if counts.events.len() < MAX_EVENTS_PER_REPORT {
            counts.events.push(event);
        } else {
            counts.events_dropped += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Empties the tally into a batch without an id; `routes` names the routes.
    pub fn take_batch(&mut self, routes: &RouteTable) -> Option<UsageBatch> {
        if self.by_key.is_empty() {
            return None;
        }
        let mut reports = Vec::new();
        for (key_id, tally) in self.by_key.drain() {
            for counts in tally.hours {
                reports.push(counts.into_report(&key_id, routes));
            }
        }
        Some(UsageBatch {
            batch_id: None,
            attempts: 0,
            reports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_format_as_rfc3339() {
        assert_eq!(format_hour(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_hour(1_795_467_600), "2026-11-23T21:00:00Z");
        assert_eq!(format_hour(951_782_400), "2000-02-29T00:00:00Z");
    }
}
