//! The storage interface the store is written against: one transaction type over SQLite or
//! PostgreSQL, the values crossing it, and the errors. See `tx.rs` for why it is this small.

mod error;
mod lists;
mod placeholders;
mod tx;
mod value;

pub use error::{Error, Result};
pub use lists::{slots, value_rows, LIST_CHUNK};
pub(crate) use tx::{named_params, params};
pub use tx::{Dialect, Params, Tx};
#[cfg(test)]
pub use value::Value;
pub use value::{Row, ToValue};
