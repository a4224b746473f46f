//! The usage and events reads' options: `keys usage`, `keys events` and `usage`.

use clap::Args;

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// The key's id (key_…).
    pub id: String,
    /// RFC 3339 start (default: 24 hours before --to).
    #[arg(long)]
    pub from: Option<String>,
    /// RFC 3339 end (default: now).
    #[arg(long)]
    pub to: Option<String>,
    /// One row per hour (the default) or per UTC day.
    #[arg(long, value_parser = ["hour", "day"])]
    pub granularity: Option<String>,
}

#[derive(Debug, Args)]
pub struct TeamUsageArgs {
    /// The team whose keys to sum (default: a team token's own team; without it, every key,
    /// which needs an admin token of no team).
    #[arg(long)]
    pub team: Option<String>,
    /// RFC 3339 start (default: 24 hours before --to).
    #[arg(long)]
    pub from: Option<String>,
    /// RFC 3339 end (default: now).
    #[arg(long)]
    pub to: Option<String>,
    /// One row per hour (the default) or per UTC day.
    #[arg(long, value_parser = ["hour", "day"])]
    pub granularity: Option<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The key's id (key_…).
    pub id: String,
    /// Only these: denied (every error code), failed (5xx and none), 5xx, none, or one error
    /// code such as RATE_LIMIT_EXCEEDED.
    #[arg(long)]
    pub outcome: Option<String>,
    /// How many, newest first (1 to 500; default 50).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Only events that started before this RFC 3339 instant (to page back).
    #[arg(long)]
    pub before: Option<String>,
}
