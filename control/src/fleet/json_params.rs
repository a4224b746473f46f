//! Lists bound as one JSON parameter, for the database counts' statements: the statement text is
//! the same for any number of rows (parsed and planned once, not a thousand placeholders each
//! time).

use crate::store::sql::{Dialect, Error, Result};

/// A table of the elements of the JSON array bound to `?{slot}`, its column `value`: rows and
/// lists travel as one JSON parameter, so the statement text is the same for any number of
/// them (parsed and planned once, not a thousand placeholders each time). The inner cast keeps
/// the parameter typed as text, which is what is bound.
pub fn json_rows(dialect: Dialect, slot: usize, alias: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("json_each(?{slot}) AS {alias}"),
        Dialect::Postgres => {
            format!("json_array_elements(CAST(CAST(?{slot} AS TEXT) AS json)) AS {alias}")
        }
    }
}

/// The elements of the JSON array of strings bound to `?{slot}`, as text.
pub fn json_texts(dialect: Dialect, slot: usize) -> String {
    match dialect {
        Dialect::Sqlite => format!("SELECT value FROM json_each(?{slot})"),
        Dialect::Postgres => {
            format!(
                "SELECT value FROM json_array_elements_text(CAST(CAST(?{slot} AS TEXT) AS json))"
            )
        }
    }
}

pub fn json_array<T: serde::Serialize>(items: &[T]) -> Result<String> {
    serde_json::to_string(items).map_err(|error| Error::Schema(format!("encoding rows: {error}")))
}
