//! A worker's running tally of requests per key and hour, handed to the usage queue every tick
//! (`usage.rs` posts it) as a `batch::UsageBatch`.

use std::collections::HashMap;

use crate::policy::decision::DenyCode;
use crate::sync::batch::{UsageBatch, UsageReport};

#[derive(Debug, Clone, Copy, Default)]
struct HourCounts {
    hour_start: i64,
    allowed: u64,
    denied: [u64; DenyCode::ALL.len()],
}

/// A worker's running tally, per key id and hour.
#[derive(Debug, Default)]
pub struct Tally {
    by_key: HashMap<String, Vec<HourCounts>>,
}

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

impl Tally {
    /// Counts one request of `key_id` at `now` (Unix seconds): allowed, or denied with `code`.
    pub fn record(&mut self, key_id: &str, now: i64, denied: Option<DenyCode>) {
        let hour_start = now - now.rem_euclid(3600);
        let hours = match self.by_key.get_mut(key_id) {
            Some(hours) => hours,
            None => self.by_key.entry(key_id.to_string()).or_default(),
        };
        let counts = match hours.iter().position(|h| h.hour_start == hour_start) {
            Some(i) => &mut hours[i],
            None => {
                hours.push(HourCounts {
                    hour_start,
                    ..HourCounts::default()
                });
                let last = hours.len() - 1;
                &mut hours[last]
            }
        };
        match denied {
            None => counts.allowed += 1,
            Some(code) => counts.denied[code.index()] += 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Empties the tally into a batch without an id.
    pub fn take_batch(&mut self) -> Option<UsageBatch> {
        if self.by_key.is_empty() {
            return None;
        }
        let mut reports = Vec::new();
        for (key_id, hours) in self.by_key.drain() {
            for counts in hours {
                let denied = DenyCode::ALL
                    .iter()
                    .filter(|code| counts.denied[code.index()] > 0)
                    .map(|code| (code.as_str().to_string(), counts.denied[code.index()]))
                    .collect();
                reports.push(UsageReport {
                    key_id: key_id.clone(),
                    hour: format_hour(counts.hour_start),
                    allowed: counts.allowed,
                    denied,
                });
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
