//! The operations: one function per use case, owning its transaction, its version bump and its
//! audit entry.

pub mod alerts;
pub mod audit;
pub mod error;
pub mod keys;
pub mod leaks;
pub mod oauth;
pub mod plans;
pub mod proxies;
pub mod quota;
pub mod scanning_keys;
pub mod seed;
pub mod teams;
#[cfg(test)]
pub mod test_keys;
pub mod tokens;
pub mod usage;
pub mod usage_queue;
pub mod webhook_dns;
pub mod webhooks;
