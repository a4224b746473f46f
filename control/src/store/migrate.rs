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

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of schema version 5 whose keys and tokens name teams as free strings comes out
    /// of migration 6 with each of those teams as a row, created when its first member was.
    #[test]
    fn team_strings_become_teams() {
        let mut connection = rusqlite::Connection::open_in_memory().unwrap();
        sqlite_files::migrations::runner()
            .set_target(refinery::Target::Version(5))
            .run(&mut connection)
            .unwrap();
        let key = |id: &str, team: &str, created: &str| {
            connection
                .execute(
                    "INSERT INTO keys (id, hash, prefix, last4, name, environment, team, scopes,
                        allowed_ips, active, plan, created_at, updated_at, updated_version)
                     VALUES (?1, 'h', 'pk_test_', 'abcd', 'k', 'test', ?2, '[]', '[]', 1, 'free',
                        ?3, ?3, 1)",
                    rusqlite::params![id, team, created],
                )
                .unwrap();
        };
        key("key_a", "blue", "2026-11-02T00:00:00Z");
        key("key_b", "blue", "2026-11-01T00:00:00Z");
        key("key_c", "", "2026-11-01T00:00:00Z");
        connection
            .execute(
                "INSERT INTO tokens (id, hash, last4, name, role, team, created_at)
                 VALUES ('tok_a', 'x', 'abcd', 't', 'viewer', 'red', '2026-10-01T00:00:00Z'),
                        ('tok_b', 'y', 'abcd', 't', 'admin', NULL, '2026-10-01T00:00:00Z')",
                [],
            )
            .unwrap();
        sqlite(&mut connection).unwrap();
        let mut statement = connection
            .prepare("SELECT name, created_at, plan FROM teams ORDER BY name")
            .unwrap();
        let teams: Vec<(String, String, Option<String>)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            teams,
            [
                ("blue".into(), "2026-11-01T00:00:00Z".into(), None),
                ("red".into(), "2026-10-01T00:00:00Z".into(), None),
            ]
        );
    }
}
