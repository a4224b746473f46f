//! The command line: `serve`, the `keys`, `tokens` and `audit` admin client, shell completion,
//! and the hidden `seed` benchmark helper.

use crate::domain::plausibility::DEFAULT_MAX_PROXY_RATE;
use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use std::path::PathBuf;

mod alerts;
mod database;
mod listener;
mod oauth;
mod proxies;
mod proxy_commands;
mod retention;
mod teams;
mod usage;
pub use alerts::AlertArgs;
pub use database::DatabaseArgs;
pub use listener::ListenerArgs;
pub use oauth::{OAuthArgs, SEALING_KEY_VAR};
pub use proxies::ProxyArgs;
pub use proxy_commands::{
    EnrollmentTokensArgs, EnrollmentTokensCommand, ProxiesArgs, ProxiesCommand,
};
pub use retention::RetentionArgs;
pub use teams::{TeamsArgs, TeamsCommand, WebhooksArgs, WebhooksCommand};
pub use usage::{EventsArgs, TeamUsageArgs, UsageArgs};

#[derive(Debug, Parser)]
#[command(
    name = "keygate-control",
    version,
    about = "Keygate control service: API keys and the snapshot feed proxies pull"
)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How the `keys`, `tokens` and `audit` commands reach the admin API. Global: they may stand before or after any
/// subcommand (`keygate-control --json keys list`, `keygate-control keys list --json`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Client options (keys, tokens and audit commands)")]
pub struct ClientArgs {
    /// Base URL of the control service: http(s)://HOST:PORT; a bare HOST:PORT means http://.
    #[arg(
        long,
        env = "KEYGATE_URL",
        default_value = "http://127.0.0.1:8081",
        value_name = "URL",
        global = true
    )]
    pub url: String,
    /// Admin token: the service's KEYGATE_ADMIN_TOKEN or a management token (kgt_…).
    #[arg(
        long,
        env = "KEYGATE_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Trust this CA (PEM) for an https URL instead of the public web roots.
    #[arg(long, env = "KEYGATE_CA_CERT", value_name = "PEM", global = true)]
    pub ca_cert: Option<PathBuf>,
}

/// The global client options, by id, for telling the commands that do not use them.
pub const CLIENT_OPTIONS: [&str; 4] = ["url", "token", "json", "ca_cert"];

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(Box<ServeArgs>),
    /// Manage keys through the admin API.
    Keys(KeysArgs),
    /// Manage the admin API's management tokens (admin role).
    Tokens(TokensArgs),
    /// Manage plans and their default limits (reading: viewer role; changing: admin).
    Plans(PlansArgs),
    /// Manage teams: their plan and the quotas their keys share (docs/teams.md).
    Teams(TeamsArgs),
    /// Manage webhook endpoints that receive alerts (docs/webhooks.md).
    Webhooks(WebhooksArgs),
    /// Read the audit log of changes made through the admin API (admin role).
    Audit(AuditArgs),
    /// Show usage summed over a team's keys (or every key) by hour or UTC day.
    Usage(TeamUsageArgs),
    /// The fleet of proxies: list, issue credentials, revoke (docs/security.md, "Proxy identity").
    Proxies(ProxiesArgs),
    /// Enrollment tokens, with which proxies obtain their own credentials.
    EnrollmentTokens(EnrollmentTokensArgs),
    /// Print a shell completion script to standard output.
    #[command(after_help = "Install it with, for example:\n  \
        bash: keygate-control completion bash > ~/.local/share/bash-completion/completions/keygate-control\n  \
        zsh:  keygate-control completion zsh > \"${fpath[1]}/_keygate-control\"\n  \
        fish: keygate-control completion fish > ~/.config/fish/completions/keygate-control.fish")]
    Completion {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Insert N random keys straight into a database (benchmarks only).
    #[command(hide = true)]
    Seed(SeedArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KEYGATE_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
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
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub alerts: AlertArgs,
    /// Serve the web console at http://ADDRESS/console/ (with the admin API beside it).
    #[arg(long, env = "KEYGATE_CONSOLE_LISTEN", value_name = "ADDRESS")]
    pub console_listen: Option<String>,
    /// What a scope allows, shown where keys are given scopes: SCOPE=TEXT (repeatable).
    #[arg(long = "scope-description", value_name = "SCOPE=TEXT")]
    pub scope_descriptions: Vec<String>,
    /// Redis for the fleet's rate-limit counts (redis://HOST:PORT[/DB]), shared by the replicas:
    /// give it with several replicas on PostgreSQL. Without it a single control service counts
    /// in memory, and replicas count in the database (about ten Envoys).
    #[arg(long, env = "KEYGATE_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// The public keys GitHub signs secret scanning reports with, as GitHub publishes them
    /// ({"public_keys": [{"key_identifier", "key", "is_current"}]}); re-read when it changes.
    /// Without it `POST /v1/secret-scanning/github` refuses every report.
    #[arg(long, env = "KEYGATE_SECRET_SCANNING_KEYS", value_name = "FILE")]
    pub secret_scanning_keys: Option<PathBuf>,
    /// What a key reported leaked gets: `revoke` deactivates it at once, `notify` only
    /// records the leak and alerts.
    #[arg(
        long,
        env = "KEYGATE_LEAKED_KEY_POLICY",
        default_value = "revoke",
        value_parser = ["revoke", "notify"]
    )]
    pub leaked_key_policy: String,
    /// Allowed requests per second one proxy may report for one key without rate limits (or
    /// whose limits changed in that hour); an entry claiming more is not counted and raises
    /// `proxy.implausible_report` (keys with limits are bounded by them).
    #[arg(long, env = "KEYGATE_MAX_PROXY_RATE", value_name = "PER_SECOND",
          default_value_t = DEFAULT_MAX_PROXY_RATE,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub max_proxy_rate: u64,
    #[command(flatten)]
    pub oauth: OAuthArgs,
    #[command(flatten)]
    pub proxies: ProxyArgs,
    #[command(flatten)]
    pub connections: ListenerArgs,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// How many keys to insert, in one transaction.
    #[arg(long)]
    pub count: u64,
    /// Environment of every inserted key.
    #[arg(long, default_value = "live", value_parser = ["live", "test"])]
    pub environment: String,
    /// Write every secret, one per line, to this file.
    #[arg(long)]
    pub secrets_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown this once only).
    Create(CreateArgs),
    /// List keys, a page at a time (or every page with --all).
    List(ListArgs),
    /// Show one key.
    Show {
        /// The key's id (key_…).
        id: String,
    },
    /// Change a key's settings.
    Update(UpdateArgs),
    /// Deactivate a key (it stays listed, inactive).
    Revoke {
        /// The key's id (key_…).
        id: String,
    },
    /// Issue a successor key with the same settings; the old one expires after the grace.
    Rotate {
        /// The id of the key to replace (key_…).
        id: String,
        /// Seconds the old key keeps working (max 30 days).
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
    },
    /// Delete a key.
    Delete {
        /// The key's id (key_…).
        id: String,
    },
    /// Show a key's usage by hour or UTC day (deleted keys too).
    Usage(UsageArgs),
    /// Show a key's recent events: denials and failed upstream answers, newest first.
    Events(EventsArgs),
    /// Check a key offline (shape, environment, checksum); nothing is sent anywhere.
    Check {
        /// The key, or `-` to read it from standard input (keeps it out of the process list
        /// and shell history).
        key: String,
    },
    /// Report a key found where it should not be: it is deactivated (policy `revoke`) and its
    /// leak recorded; the key is sent to the service, which keeps only its hash.
    Leaked(LeakedArgs),
}

#[derive(Debug, Args)]
pub struct LeakedArgs {
    /// The leaked key, or `-` to read it from standard input.
    pub key: String,
    /// Where it was found (a URL).
    #[arg(long, value_name = "URL")]
    pub found_at: Option<String>,
    /// What kind of place that is (a repository, a log, a ticket, …).
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a management token and print its secret (shown this once only).
    Create {
        /// A name people recognise the token by (1–128 characters).
        #[arg(long)]
        name: String,
        /// viewer reads keys and usage; editor also changes keys; admin also manages tokens.
        #[arg(long, value_parser = ["viewer", "editor", "admin"])]
        role: String,
        /// Confine the token to this team's keys, tokens and audit entries.
        #[arg(long)]
        team: Option<String>,
        /// RFC 3339 instant, e.g. 2030-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List management tokens (never their secrets).
    List,
    /// Revoke a management token at once.
    Revoke {
        /// The token's id (tok_…).
        id: String,
    },
    /// Issue a successor token with the same settings; the old one expires after the grace.
    Rotate {
        /// The id of the token to replace (tok_…).
        id: String,
        /// Seconds the old token keeps working (max 30 days).
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
    },
}

#[derive(Debug, Args)]
pub struct PlansArgs {
    #[command(subcommand)]
    pub command: PlansCommand,
}

#[derive(Debug, Subcommand)]
pub enum PlansCommand {
    /// List the plans and their default limits.
    List,
    /// Create a plan; a limit not given is unlimited.
    Create {
        /// 1–64 lowercase letters, digits or '-'.
        name: String,
        /// What the plan is for (at most 256 characters).
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Change a plan; every key on it gets the new limits in the next snapshot.
    Update {
        /// The plan's name.
        name: String,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Make a limit unlimited (repeatable; all for every limit not given).
        #[arg(long = "clear-limit", value_name = "WINDOW", value_enum)]
        clear_limits: Vec<LimitWindow>,
    },
    /// Delete a plan no key is on.
    Delete {
        /// The plan's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries about this key or token id.
    #[arg(long)]
    pub target: Option<String>,
    /// Only entries at or after this RFC 3339 instant.
    #[arg(long)]
    pub from: Option<String>,
    /// Entries per page (max 1000).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Continue from a previous page's next cursor.
    #[arg(long)]
    pub cursor: Option<String>,
}

/// Limit overrides; each replaces the plan's value for that window.
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    /// Requests per minute (overrides the plan's).
    #[arg(long, value_name = "N")]
    pub per_minute: Option<u64>,
    /// Requests per hour (overrides the plan's).
    #[arg(long, value_name = "N")]
    pub per_hour: Option<u64>,
    /// Requests per day, also the daily quota (overrides the plan's).
    #[arg(long, value_name = "N")]
    pub per_day: Option<u64>,
    /// Requests in flight at once (overrides the plan's).
    #[arg(long, value_name = "N")]
    pub concurrent: Option<u64>,
    /// Monthly quota, enforced fleet-wide by the control service.
    #[arg(long, value_name = "N")]
    pub per_month: Option<u64>,
}

/// A limit override by its field name in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LimitWindow {
    #[value(name = "per_minute", alias = "per-minute")]
    PerMinute,
    #[value(name = "per_hour", alias = "per-hour")]
    PerHour,
    #[value(name = "per_day", alias = "per-day")]
    PerDay,
    #[value(name = "concurrent")]
    Concurrent,
    #[value(name = "per_month", alias = "per-month")]
    PerMonth,
    /// Every override.
    #[value(name = "all")]
    All,
}

impl LimitWindow {
    /// The override's field in the API (`all` for every one).
    pub fn field(self) -> &'static str {
        match self {
            LimitWindow::PerMinute => "per_minute",
            LimitWindow::PerHour => "per_hour",
            LimitWindow::PerDay => "per_day",
            LimitWindow::Concurrent => "concurrent",
            LimitWindow::PerMonth => "per_month",
            LimitWindow::All => "all",
        }
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A name people recognise the key by (1–128 characters).
    #[arg(long)]
    pub name: String,
    /// live (the default) or test; decides the secret's prefix and cannot change later.
    #[arg(long, value_parser = ["live", "test"])]
    pub environment: Option<String>,
    /// The team that owns the key.
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
    /// Billing plan, which sets the default limits (free by default; see `plans list`).
    #[arg(long)]
    pub plan: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// A key's state as `list --status` filters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFilter {
    /// Authenticates now: active and not expired.
    Active,
    /// Revoked (deactivated).
    Inactive,
    /// Active, but its expiry has passed.
    Expired,
}

impl StatusFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Active => "active",
            StatusFilter::Inactive => "inactive",
            StatusFilter::Expired => "expired",
        }
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only keys of this team.
    #[arg(long)]
    pub team: Option<String>,
    /// Only keys of this environment.
    #[arg(long, value_parser = ["live", "test"])]
    pub environment: Option<String>,
    /// Only active (true) or inactive (false) keys, expired ones included.
    #[arg(long, value_name = "true|false", conflicts_with = "status")]
    pub active: Option<bool>,
    /// Only keys in this state.
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// Keys per page (max 1000).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Continue from a previous page's next cursor.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow next_cursor and print every page as one list.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The key's id (key_…).
    pub id: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new team ("" for none).
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
    /// A new expiry, an RFC 3339 instant in the future.
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Remove the expiry.
    #[arg(long, conflicts_with = "expires_at")]
    pub no_expiry: bool,
    /// A new plan; overrides keep applying over its limits.
    #[arg(long)]
    pub plan: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Remove a limit override so the plan's value applies again (repeatable; all for every
    /// override). Other overrides are kept.
    #[arg(long = "clear-limit", value_name = "WINDOW", value_enum)]
    pub clear_limits: Vec<LimitWindow>,
    /// Activate (true) or deactivate (false) the key.
    #[arg(long, value_name = "true|false")]
    pub active: Option<bool>,
}

#[cfg(test)]
mod tests;
