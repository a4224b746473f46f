//! The error of the key and token operations, typed so the API can answer each case with its
//! own status (`api/state.rs`) and the CLI's `seed` with its own message.

use crate::store::sql::Error;
use keygate_contract::FieldError;
use std::fmt;

/// Why an operation on a key or a token did not happen.
#[derive(Debug)]
pub enum LifecycleError {
    /// No such record, or not one the caller may see.
    NotFound,
    /// The key was deleted; only its tombstone remains.
    Deleted,
    Database(Error),
    Random(getrandom::Error),
    /// The key as it would be served is one the filter would refuse.
    Invalid(FieldError),
    /// The key was reported leaked: it cannot be turned back on, only rotated.
    Leaked,
}

impl fmt::Display for LifecycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LifecycleError::NotFound => write!(f, "no such key"),
            LifecycleError::Deleted => write!(f, "the key was deleted"),
            LifecycleError::Database(error) => write!(f, "database: {error}"),
            LifecycleError::Random(error) => write!(f, "OS random number generator: {error}"),
            LifecycleError::Invalid(error) => write!(f, "{error}"),
            LifecycleError::Leaked => write!(
                f,
                "the key was reported leaked and cannot be re-activated; rotate it \
                 (POST /v1/keys/{{id}}/rotate) and give its holder the successor"
            ),
        }
    }
}

impl From<Error> for LifecycleError {
    fn from(error: Error) -> Self {
        LifecycleError::Database(error)
    }
}

impl From<getrandom::Error> for LifecycleError {
    fn from(error: getrandom::Error) -> Self {
        LifecycleError::Random(error)
    }
}
