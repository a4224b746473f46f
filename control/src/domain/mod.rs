//! The domain: plain typed data and the rules over it. No HTTP, no SQL: everything here runs in
//! unit tests with no database and no server.

pub mod alerts;
pub mod audit;
pub mod clock;
pub mod cursor;
pub mod events;
pub mod headroom;
pub mod keys;
pub mod leaks;
pub mod oauth;
pub mod patch;
pub mod plans;
pub mod plausibility;
pub mod proxies;
pub mod quota;
pub mod secret_scanning;
pub mod secrets;
pub mod served;
pub mod teams;
pub mod tokens;
pub mod usage_range;
pub mod usage_report;
pub mod webhook_url;
pub mod webhooks;
