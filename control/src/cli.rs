//! The command line: `serve`, the `keys` admin client, and the hidden `seed` benchmark helper.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "keygate-control",
    version,
    about = "Keygate control service: API keys and the snapshot feed proxies pull"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Manage keys through the admin API.
    Keys(Box<KeysArgs>),
    /// Insert N random keys straight into a database (benchmarks only).
    #[command(hide = true)]
    Seed(SeedArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KEYGATE_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: String,
    /// SQLite database file, created with its schema on first start.
    #[arg(long, env = "KEYGATE_DB", default_value = "keygate.db")]
    pub db: PathBuf,
    /// Scopes keys may be given (comma-separated).
    #[arg(
        long,
        env = "KEYGATE_SCOPES",
        default_value = "submit_job,check_status,list_models"
    )]
    pub scopes: String,
    /// Use dev-admin-token / dev-sync-token for whichever token is not set.
    #[arg(long)]
    pub dev: bool,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[arg(long)]
    pub db: PathBuf,
    #[arg(long)]
    pub count: u64,
    #[arg(long, default_value = "live", value_parser = ["live", "test"])]
    pub environment: String,
    /// Write every secret, one per line, to this file.
    #[arg(long)]
    pub secrets_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Base URL of the control service.
    #[arg(
        long,
        env = "KEYGATE_URL",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    pub url: String,
    /// Admin token.
    #[arg(
        long,
        env = "KEYGATE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown this once only).
    Create(CreateArgs),
    /// List keys.
    List(ListArgs),
    /// Show one key.
    Show { id: String },
    /// Change a key's settings.
    Update(UpdateArgs),
    /// Deactivate a key (it stays listed, inactive).
    Revoke { id: String },
    /// Issue a successor key with the same settings; the old one expires after the grace.
    Rotate {
        id: String,
        /// Seconds the old key keeps working (max 30 days).
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
    },
    /// Delete a key.
    Delete { id: String },
    /// Show a key's usage by hour or UTC day (deleted keys too).
    Usage(UsageArgs),
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    pub id: String,
    /// RFC 3339 start (default: 24 hours before --to).
    #[arg(long)]
    pub from: Option<String>,
    /// RFC 3339 end (default: now).
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long, value_parser = ["hour", "day"])]
    pub granularity: Option<String>,
}

/// Limit overrides; each replaces the plan's value for that window.
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    #[arg(long)]
    pub per_minute: Option<u64>,
    #[arg(long)]
    pub per_hour: Option<u64>,
    #[arg(long)]
    pub per_day: Option<u64>,
    #[arg(long)]
    pub concurrent: Option<u64>,
    /// Monthly quota, enforced fleet-wide by the control service.
    #[arg(long)]
    pub per_month: Option<u64>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long, value_parser = ["live", "test"])]
    pub environment: Option<String>,
    #[arg(long)]
    pub team: Option<String>,
    /// A scope the key may use (repeatable); none means full access.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// An IP or CIDR the key may be used from (repeatable); none means anywhere.
    #[arg(long = "allow-ip")]
    pub allowed_ips: Vec<String>,
    /// RFC 3339 instant, e.g. 2030-01-01T00:00:00Z.
    #[arg(long)]
    pub expires_at: Option<String>,
    #[arg(long, value_parser = ["free", "pro", "business", "enterprise"])]
    pub plan: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub team: Option<String>,
    #[arg(long, value_parser = ["live", "test"])]
    pub environment: Option<String>,
    #[arg(long)]
    pub active: Option<bool>,
    /// Keys per page (max 1000).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Continue from a previous page's next cursor.
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub id: String,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub team: Option<String>,
    /// Replaces the scopes (repeatable).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Remove every scope (full access).
    #[arg(long, conflicts_with = "scopes")]
    pub clear_scopes: bool,
    /// Replaces the allowed IPs (repeatable).
    #[arg(long = "allow-ip")]
    pub allowed_ips: Vec<String>,
    /// Remove every IP restriction.
    #[arg(long, conflicts_with = "allowed_ips")]
    pub clear_allowed_ips: bool,
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Remove the expiry.
    #[arg(long, conflicts_with = "expires_at")]
    pub no_expiry: bool,
    #[arg(long, value_parser = ["free", "pro", "business", "enterprise"])]
    pub plan: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[arg(long)]
    pub active: Option<bool>,
}
