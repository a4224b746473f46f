//! `keygate-control keys …`: the admin API from the command line.

mod commands;
mod http;
mod table;

pub use commands::run;
