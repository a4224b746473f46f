//! What can go wrong serving the feed, and running its database work off the async workers.

use crate::store::sql::Error as StoreError;
use crate::store::Store;
use std::fmt;
use std::sync::Arc;

#[derive(Debug)]
pub enum FeedError {
    /// The database failed or is unavailable.
    Store(StoreError),
    /// A page could not be encoded (too large for the encoding's counters).
    Encode(String),
    /// The blocking task running the database work panicked or was cancelled.
    Task(String),
}

impl fmt::Display for FeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedError::Store(error) => write!(f, "database: {error}"),
            FeedError::Encode(message) => write!(f, "encoding snapshot: {message}"),
            FeedError::Task(message) => write!(f, "database task failed: {message}"),
        }
    }
}

impl From<StoreError> for FeedError {
    fn from(error: StoreError) -> Self {
        FeedError::Store(error)
    }
}

/// Runs blocking database work on tokio's blocking pool, off the async workers.
pub async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, FeedError> {
    store
        .run_blocking(work)
        .await
        .map_err(|error| FeedError::Task(error.to_string()))?
        .map_err(FeedError::Store)
}
