//! Why the service did not start, or stopped with an error, by cause.

use std::fmt;

#[derive(Debug)]
pub enum StartupError {
    /// A setting is missing or invalid: tokens, scopes, scope descriptions.
    Config(String),
    /// The database could not be opened or migrated.
    Database(String),
    /// The runtime could not start, or an address could not be bound.
    Io(String),
    /// A server stopped with an error.
    Serve(String),
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::Config(message)
            | StartupError::Database(message)
            | StartupError::Io(message)
            | StartupError::Serve(message) => f.write_str(message),
        }
    }
}
