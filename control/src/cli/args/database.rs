//! Where the keys live: the database options every command that opens it shares.

use crate::store::Location;
use clap::Args;
use std::path::PathBuf;

/// Where the keys live: a SQLite file (the default) or PostgreSQL.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// SQLite database file, created with its schema on first start; one process only.
    #[arg(long, env = "KEYGATE_DB", default_value = "keygate.db")]
    pub db: PathBuf,
    /// PostgreSQL instead of SQLite (postgres://USER[:PASSWORD]@HOST:PORT/DB), so that several
    /// replicas can serve one fleet; the schema is migrated on start.
    #[arg(
        long,
        env = "KEYGATE_DATABASE_URL",
        value_name = "URL",
        conflicts_with = "db"
    )]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    pub fn location(&self) -> Location {
        match &self.database_url {
            Some(url) => Location::Postgres(url.clone()),
            None => Location::Sqlite(self.db.clone()),
        }
    }
}
