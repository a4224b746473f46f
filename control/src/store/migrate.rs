//! Versioned schema migrations (refinery), one folder per backend under `control/migrations/`.
//! Each start applies what the database lacks; a database migrated by a newer build (a version
//! this build has no file for) is refused with an error saying so, rather than used half-known.

use crate::store::sql::Error;

mod sqlite_files {
    refinery::embed_migrations!("migrations/sqlite");
}

mod postgres_files {
    refinery::embed_migrations!("migrations/postgres");
}

pub fn sqlite(connection: &mut rusqlite::Connection) -> Result<(), Error> {
    sqlite_files::migrations::runner()
        .run(connection)
        .map(drop)
        .map_err(explain)
}

pub fn postgres(client: &mut postgres::Client) -> Result<(), Error> {
    postgres_files::migrations::runner()
        .run(client)
        .map(drop)
        .map_err(explain)
}

/// The newest schema version this build knows, per backend (they move together).
pub fn known_version() -> i64 {
    sqlite_files::migrations::runner()
        .get_migrations()
        .iter()
        .map(|migration| i64::from(migration.version()))
        .max()
        .unwrap_or(0)
}

fn explain(error: refinery::Error) -> Error {
    match error.kind() {
        refinery::error::Kind::MissingVersion(migration) => Error::Schema(format!(
            "the database has schema migration {migration}, which this keygate-control does not \
             know (it knows up to version {}): a newer keygate-control migrated it; run that \
             version or newer",
            known_version()
        )),
        refinery::error::Kind::DivergentVersion(applied, ours) => Error::Schema(format!(
            "the database applied migration {applied}, which differs from this build's {ours}"
        )),
        _ => Error::Schema(format!("migration failed: {error}")),
    }
}
