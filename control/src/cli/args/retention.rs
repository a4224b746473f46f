//! `serve`'s retention options: how long hourly usage and events are kept.

use crate::domain::events::{DEFAULT_MAX_PER_KEY, DEFAULT_RETENTION_DAYS};
use clap::Args;

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Days of hourly usage to keep; older hours are kept as UTC-day totals.
    #[arg(
        long,
        env = "KEYGATE_USAGE_RETENTION_DAYS",
        default_value_t = 90,
        value_name = "DAYS",
        value_parser = clap::value_parser!(u32).range(1..=36600)
    )]
    pub usage_retention_days: u32,
    /// Days of events (denials, failed upstream answers) to keep.
    #[arg(
        long,
        env = "KEYGATE_EVENT_RETENTION_DAYS",
        default_value_t = DEFAULT_RETENTION_DAYS,
        value_name = "DAYS",
        value_parser = clap::value_parser!(u32).range(1..=3660)
    )]
    pub event_retention_days: u32,
    /// Events kept per key at most; the oldest go first.
    #[arg(
        long,
        env = "KEYGATE_EVENTS_PER_KEY",
        default_value_t = DEFAULT_MAX_PER_KEY,
        value_name = "COUNT",
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub events_per_key: u32,
}
