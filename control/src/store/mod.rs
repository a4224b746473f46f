//! Persistence: the database (SQLite or PostgreSQL behind one interface), the key rows, the
//! usage counted for them, management tokens and the audit log.

pub mod alerts;
pub mod audit;
pub mod db;
pub mod events;
pub mod ip_sketch;
pub mod keys;
mod migrate;
pub mod oauth_keys;
pub mod plans;
mod postgres;
pub mod proxies;
pub mod sql;
mod sqlite;
pub mod teams;
pub mod tokens;
pub mod usage;
pub mod webhooks;

pub use db::{Location, Store};
