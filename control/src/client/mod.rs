//! `keygate-control keys|tokens|audit …`: the admin API from the command line.

mod answers;
mod commands;
mod http;
mod manage;
mod table;

pub use commands::run;
pub use manage::{run_audit, run_tokens};
