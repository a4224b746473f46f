//! `keygate-control keys|tokens|audit …`: the admin API from the command line.

mod answers;
mod commands;
mod error;
mod http;
mod key_check;
mod manage;
mod plans;
mod proxies;
mod table;
mod teams;
mod tls;
mod usage;
mod webhooks;

pub use commands::{run, run_team_usage};

pub use manage::{run_audit, run_tokens};
pub use plans::run_plans;
pub use proxies::{run_enrollment_tokens, run_proxies};
pub use teams::run_teams;
pub use webhooks::run_webhooks;
