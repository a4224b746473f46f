//! Sightings of proxies, gathered in memory per call and flushed to the database every
//! [`FLUSH_INTERVAL`] (`server/` runs the flush): a proxy costs one row write per flush it was
//! seen in, whatever its call rate (long polls, usage reports, fleet syncs).

use crate::domain::proxies::Presence;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How often a replica writes what it saw.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// What happened to a proxy's post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
}

#[derive(Debug, Default)]
pub struct PresenceLog {
    seen: Mutex<BTreeMap<String, Presence>>,
}

impl PresenceLog {
    fn note(&self, id: &str, now: DateTime<Utc>, update: impl FnOnce(&mut Presence)) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let presence = seen.entry(id.to_string()).or_default();
        presence.last_seen = presence.last_seen.max(Some(now));
        update(presence);
    }

    /// A snapshot read from the version the proxy holds (`since`; none: a full snapshot).
    pub fn read_snapshot(&self, id: &str, since: Option<u64>, now: DateTime<Utc>) {
        self.note(id, now, |presence| {
            presence.snapshot_version = Some(since.unwrap_or(0));
            presence.snapshot_read_at = Some(now);
        });
    }

    pub fn report(&self, id: &str, outcome: Outcome, now: DateTime<Utc>) {
        self.note(id, now, |presence| match outcome {
            Outcome::Ok => {
                presence.last_report = Some(now);
                presence.report_failing_since = None;
            }
            Outcome::Failed => {
                presence.report_failing_since = presence.report_failing_since.or(Some(now));
            }
        });
    }

    pub fn sync(&self, id: &str, outcome: Outcome, now: DateTime<Utc>) {
        self.note(id, now, |presence| match outcome {
            Outcome::Ok => {
                presence.last_sync = Some(now);
                presence.sync_failing_since = None;
            }
            Outcome::Failed => {
                presence.sync_failing_since = presence.sync_failing_since.or(Some(now));
            }
        });
    }

    /// Everything seen since the last take.
    pub fn take(&self) -> BTreeMap<String, Presence> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts back what a failed flush took, under anything seen since.
    pub fn restore(&self, taken: BTreeMap<String, Presence>) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, mut older) in taken {
            if let Some(newer) = seen.get(&id) {
                older.merge(newer);
            }
            seen.insert(id, older);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn sightings_gather_until_taken() {
        let log = PresenceLog::default();
        log.read_snapshot("prx_a", Some(4), at(1));
        log.report("prx_a", Outcome::Failed, at(3));
        log.sync("prx_b", Outcome::Ok, at(4));
        let taken = log.take();
        assert_eq!(taken.len(), 2);
        let a = &taken["prx_a"];
        assert_eq!(a.last_seen, Some(at(3)));
        assert_eq!(a.snapshot_version, Some(4));
        assert_eq!(a.report_failing_since, Some(at(3)));
        assert_eq!(taken["prx_b"].last_sync, Some(at(4)));
        assert!(log.take().is_empty());
        log.report("prx_a", Outcome::Ok, at(9));
        log.restore(taken);
        let again = log.take();
        assert_eq!(again["prx_a"].last_report, Some(at(9)));
        assert_eq!(again["prx_a"].report_failing_since, None);
    }
}
