//! Storage errors, whichever backend raised them. `Unavailable` is the one a client can do
//! something about (retry later): the database is down, restarting or too slow to answer within
//! our deadline. The API answers it with 503; everything else is a bug or damage (500).

use std::fmt;

#[derive(Debug)]
pub enum Error {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
    /// The database cannot be reached or did not answer in time.
    Unavailable(String),
    /// A column did not hold what the code reads it as.
    Conversion {
        column: usize,
        message: String,
    },
    /// `query_row` found no row.
    NoRows,
    /// The schema cannot be brought to (or is newer than) what this build knows.
    Schema(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sqlite(error) => write!(f, "sqlite: {error}"),
            Error::Postgres(error) => match error.as_db_error() {
                Some(db) => write!(f, "postgres: {} ({})", db.message(), db.code().code()),
                None => write!(f, "postgres: {error}"),
            },
            Error::Unavailable(reason) => write!(f, "database unavailable: {reason}"),
            Error::Conversion { column, message } => write!(f, "column {column}: {message}"),
            Error::NoRows => f.write_str("no row"),
            Error::Schema(message) => write!(f, "database schema: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        match error {
            rusqlite::Error::QueryReturnedNoRows => Error::NoRows,
            rusqlite::Error::SqliteFailure(code, _)
                if matches!(
                    code.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                Error::Unavailable(format!("sqlite: {error}"))
            }
            other => Error::Sqlite(other),
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(error: postgres::Error) -> Self {
        if postgres_unavailable(&error) {
            Error::Unavailable(format!("postgres: {error}"))
        } else {
            Error::Postgres(error)
        }
    }
}

/// A lost or refused connection, a server shutting down or starting, or one of our deadlines
/// (statement or lock timeout) passing: all of them pass, so the caller may retry.
fn postgres_unavailable(error: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::QUERY_CANCELED,
                    SqlState::LOCK_NOT_AVAILABLE,
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                ]
                .contains(code)
        }
        // No server answer at all: the socket failed.
        None => true,
    }
}

impl From<r2d2::Error> for Error {
    fn from(error: r2d2::Error) -> Self {
        Error::Unavailable(format!("no database connection: {error}"))
    }
}
