//! The process: configuration, startup and shutdown, and the console's files. The only place
//! that knows the HTTP API (`api/`) as a whole.

pub mod clock;
pub mod config;
pub mod console;
pub mod error;
pub mod fleet_bounds;
pub mod listener;
pub mod proxy_presence;
pub mod startup;
pub mod tls;
pub mod unread_body;
pub mod webhook_sender;
