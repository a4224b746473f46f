//! The command line: its arguments and the client commands that call a running service.

pub mod args;
pub mod client;
