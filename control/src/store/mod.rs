//! Persistence: the SQLite database, the key rows and the usage counted for them.

pub mod db;
pub mod keys;
pub mod lifecycle;
pub mod quota;
pub mod seed;
pub mod usage;

pub use db::Store;
