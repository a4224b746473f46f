//! `serve`'s proxy identity options (docs/security.md, "Proxy identity").

use crate::cli::args::listener::parse_duration;
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Refuse the shared KEYGATE_SYNC_TOKEN: every proxy syncs with a credential of its own
    /// (enrolled with an enrollment token, or issued with POST /v1/proxies).
    #[arg(long, env = "KEYGATE_NO_SHARED_SYNC_TOKEN")]
    pub no_shared_sync_token: bool,
    /// A proxy not seen for this long is listed `stale` (several missed polls: the filter
    /// long-polls every 30s by default).
    #[arg(long, env = "KEYGATE_PROXY_STALE_AFTER", value_name = "DURATION",
          default_value = "90s", value_parser = parse_duration)]
    pub proxy_stale_after: Duration,
    /// Enrollments one enrollment token may make per minute on each replica; more are
    /// answered 429 with Retry-After (a fleet restarting at once enrolls over a few minutes).
    #[arg(long, env = "KEYGATE_ENROLLMENTS_PER_MINUTE", value_name = "COUNT",
          default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub enrollments_per_minute: u32,
}
