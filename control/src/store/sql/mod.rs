//! The storage interface the store is written against: one transaction type over SQLite or
//! PostgreSQL, the values crossing it, and the errors. See `tx.rs` for why it is this small.

mod error;
mod placeholders;
mod tx;
mod value;

pub use error::{Error, Result};
pub(crate) use tx::{named_params, params};
pub use tx::{Dialect, Params, Tx};
#[cfg(test)]
pub use value::Value;
pub use value::{Row, ToValue};
