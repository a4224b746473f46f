//! What travels from each worker's tally (`tally.rs`) through the usage queue (`queue.rs`) to
//! the worker that posts it (`usage.rs`): batches of usage reports, and the merge of reports of
//! one key and hour. Its own module so that the tally and the reporter both use it without
//! using each other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use keygate_contract::usage::UsageReport;

/// What travels through the queue: fresh tallies (no id yet) or a batch being retried.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageBatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    pub reports: Vec<UsageReport>,
}

/// Sums reports of the same key and hour (`UsageReport::add`: events and route names bounded).
pub fn merge(reports: impl IntoIterator<Item = UsageReport>) -> Vec<UsageReport> {
    let mut merged: BTreeMap<(String, String), UsageReport> = BTreeMap::new();
    for report in reports {
        merged
            .entry((report.key_id.clone(), report.hour.clone()))
            .or_insert_with(|| UsageReport {
                key_id: report.key_id.clone(),
                hour: report.hour.clone(),
                ..UsageReport::default()
            })
            .add(report);
    }
    merged.into_values().collect()
}
