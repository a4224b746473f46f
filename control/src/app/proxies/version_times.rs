//! When this replica saw each recent feed version published, so a proxy's lag can be told in
//! time: a proxy holding version v is behind since v + 1 appeared. Bounded: the last
//! [`HELD_VERSIONS`] versions; a proxy older than all of them is behind at least since the
//! oldest held.

use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

pub const HELD_VERSIONS: usize = 4_096;

#[derive(Debug, Default)]
pub struct VersionTimes {
    seen: Mutex<VecDeque<(u64, DateTime<Utc>)>>,
}

impl VersionTimes {
    /// `version` is published, seen at `at` (an older or repeated version is ignored).
    pub fn note(&self, version: u64, at: DateTime<Utc>) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.back().is_some_and(|(last, _)| *last >= version) {
            return;
        }
        if seen.len() == HELD_VERSIONS {
            seen.pop_front();
        }
        seen.push_back((version, at));
    }

    /// When the first version after `held` was seen; `None` if none is held after it.
    pub fn behind_since(&self, held: u64) -> Option<DateTime<Utc>> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let first_newer = seen.partition_point(|(version, _)| *version <= held);
        seen.get(first_newer).map(|(_, at)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn lag_starts_with_the_first_newer_version() {
        let at = |s: i64| Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap();
        let times = VersionTimes::default();
        times.note(5, at(0));
        times.note(7, at(10));
        times.note(7, at(20));
        times.note(9, at(30));
        assert_eq!(times.behind_since(4), Some(at(0)));
        assert_eq!(times.behind_since(5), Some(at(10)));
        assert_eq!(times.behind_since(6), Some(at(10)));
        assert_eq!(times.behind_since(8), Some(at(30)));
        assert_eq!(times.behind_since(9), None);
    }
}
