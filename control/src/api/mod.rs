//! The HTTP API: routes, handlers and the plumbing they share.

pub mod access;
pub mod audit;
pub mod auth;
pub mod encoding;
pub mod error;
pub mod extract;
pub mod fleet;
pub mod keys;
pub mod leaks;
pub mod metrics;
pub mod oauth;
pub mod plans;
pub mod proxies;
pub mod router;
pub mod scopes;
pub mod session;
pub mod snapshot;
pub mod state;
pub mod teams;
pub mod tokens;
pub mod usage;
pub mod webhooks;
