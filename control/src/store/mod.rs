//! Persistence: the SQLite database and the key rows in it.

pub mod db;
pub mod keys;
pub mod lifecycle;
pub mod seed;

pub use db::Store;
