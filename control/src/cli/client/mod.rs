//! `keygate-control keys|tokens|audit …`: the admin API from the command line.

mod answers;
mod commands;
mod error;
mod http;
mod manage;
mod plans;
mod table;
mod tls;
mod usage;

pub use commands::{run, run_team_usage};

pub use manage::{run_audit, run_tokens};
pub use plans::run_plans;
