//! Persistence: the SQLite database, the key rows, the usage counted for them, management
//! tokens and the audit log.

pub mod audit;
pub mod db;
pub mod keys;
pub mod lifecycle;
pub mod plans;
pub mod quota;
pub mod seed;
pub mod tokens;
pub mod usage;

pub use db::Store;
