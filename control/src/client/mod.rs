//! `keygate-control keys …`: the admin API from the command line.

mod answers;
mod commands;
mod http;
mod table;

pub use commands::run;
