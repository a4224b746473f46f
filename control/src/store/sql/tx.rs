//! One transaction on either backend, with the few calls the store makes: execute a statement,
//! read rows. Store code is written once against this; the API handlers never see it.

use super::error::{Error, Result};
use super::placeholders::{self, Slots};
use super::value::{Row, ToValue, Value};
use postgres::Statement;
use std::cell::RefCell;
use std::collections::HashMap;

/// Which SQL the backend speaks, for the few statements that must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The RFC 3339 text `expr` (a column or parameter) as something that compares in time
    /// order: as text, `…:00.5Z` would sort before `…:00Z`.
    pub fn instant(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("julianday({expr})"),
            // The inner cast keeps a parameter typed as text, which is what is bound.
            Dialect::Postgres => format!("CAST(CAST({expr} AS TEXT) AS timestamptz)"),
        }
    }
}

/// A statement's parameters: numbered (`?1`) or named (`:name`).
#[derive(Debug, Clone, Default)]
pub enum Params {
    #[default]
    None,
    Positional(Vec<Value>),
    Named(Vec<(&'static str, Value)>),
}

impl From<()> for Params {
    fn from((): ()) -> Self {
        Params::None
    }
}

impl<T: ToValue, const N: usize> From<[T; N]> for Params {
    fn from(values: [T; N]) -> Self {
        Params::Positional(values.iter().map(ToValue::to_value).collect())
    }
}

/// `params![a, b]`: values for `?1`, `?2`.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        $crate::store::sql::Params::Positional(vec![
            $($crate::store::sql::ToValue::to_value(&$value)),*
        ])
    };
}

/// `named_params! { ":a": x, ":b": y }`: values for `:a` and `:b`.
macro_rules! named_params {
    ($($name:literal : $value:expr),* $(,)?) => {
        $crate::store::sql::Params::Named(vec![
            $(($name, $crate::store::sql::ToValue::to_value(&$value))),*
        ])
    };
}

pub(crate) use {named_params, params};

pub struct Tx<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Sqlite(&'a rusqlite::Connection),
    /// With the statements prepared so far in this transaction, so a statement run many times
    /// (a bulk insert, a usage batch) is parsed once, not once per row: PostgreSQL would
    /// otherwise take two round trips per call.
    Postgres(
        RefCell<postgres::Transaction<'a>>,
        RefCell<HashMap<String, Statement>>,
    ),
}

impl<'a> Tx<'a> {
    pub fn sqlite(tx: &'a rusqlite::Connection) -> Tx<'a> {
        Tx {
            inner: Inner::Sqlite(tx),
        }
    }

    pub fn postgres(tx: postgres::Transaction<'a>) -> Tx<'a> {
        Tx {
            inner: Inner::Postgres(RefCell::new(tx), RefCell::new(HashMap::new())),
        }
    }

    /// The PostgreSQL transaction back, to commit it.
    pub fn into_postgres(self) -> Option<postgres::Transaction<'a>> {
        match self.inner {
            Inner::Postgres(tx, _) => Some(tx.into_inner()),
            Inner::Sqlite(_) => None,
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.inner {
            Inner::Sqlite(_) => Dialect::Sqlite,
            Inner::Postgres(..) => Dialect::Postgres,
        }
    }

    /// Runs statements without parameters or results (schema, settings).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(tx) => Ok(tx.execute_batch(sql)?),
            Inner::Postgres(tx, _) => Ok(tx.borrow_mut().batch_execute(sql)?),
        }
    }

    /// Runs one statement; returns the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl Into<Params>) -> Result<usize> {
        let params = params.into();
        match &self.inner {
            Inner::Sqlite(tx) => {
                let mut statement = tx.prepare_cached(sql)?;
                let changed = match &params {
                    Params::None => statement.execute([])?,
                    Params::Positional(values) => {
                        statement.execute(rusqlite::params_from_iter(values.iter()))?
                    }
                    Params::Named(pairs) => statement.execute(sqlite_named(pairs).as_slice())?,
                };
                Ok(changed)
            }
            Inner::Postgres(tx, cache) => {
                let (statement, values) = prepared(tx, cache, sql, params)?;
                let changed = tx
                    .borrow_mut()
                    .execute(&statement, &postgres_refs(&values))?;
                Ok(usize::try_from(changed).unwrap_or(usize::MAX))
            }
        }
    }

    /// Every row the statement returns.
    pub fn query(&self, sql: &str, params: impl Into<Params>) -> Result<Vec<Row>> {
        let params = params.into();
        match &self.inner {
            Inner::Sqlite(tx) => {
                let mut statement = tx.prepare_cached(sql)?;
                let columns = statement.column_count();
                let mut rows = match &params {
                    Params::None => statement.query([])?,
                    Params::Positional(values) => {
                        statement.query(rusqlite::params_from_iter(values.iter()))?
                    }
                    Params::Named(pairs) => statement.query(sqlite_named(pairs).as_slice())?,
                };
                let mut read = Vec::new();
                while let Some(row) = rows.next()? {
                    read.push(sqlite_row(row, columns)?);
                }
                Ok(read)
            }
            Inner::Postgres(tx, cache) => {
                let (statement, values) = prepared(tx, cache, sql, params)?;
                let rows = tx.borrow_mut().query(&statement, &postgres_refs(&values))?;
                rows.iter().map(postgres_row).collect()
            }
        }
    }

    pub fn query_map<T>(
        &self,
        sql: &str,
        params: impl Into<Params>,
        read: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.query(sql, params)?.iter().map(read).collect()
    }

    /// The first row, or `Error::NoRows`.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Into<Params>,
        read: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        self.query_opt(sql, params, read)?.ok_or(Error::NoRows)
    }

    /// The first row, if there is one.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: impl Into<Params>,
        read: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.query(sql, params)?.first().map(read).transpose()
    }
}

fn sqlite_named<'a>(
    pairs: &'a [(&'static str, Value)],
) -> Vec<(&'static str, &'a dyn rusqlite::ToSql)> {
    pairs
        .iter()
        .map(|(name, value)| (*name, value as &dyn rusqlite::ToSql))
        .collect()
}

fn sqlite_row(row: &rusqlite::Row, columns: usize) -> Result<Row> {
    use rusqlite::types::ValueRef;
    let mut values = Vec::with_capacity(columns);
    for index in 0..columns {
        values.push(match row.get_ref(index)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(number) => Value::Int(number),
            ValueRef::Real(number) => Value::Real(number),
            ValueRef::Text(text) => Value::Text(String::from_utf8_lossy(text).into_owned()),
            ValueRef::Blob(_) => {
                return Err(Error::Conversion {
                    column: index,
                    message: "a blob where the store keeps none".into(),
                })
            }
        });
    }
    Ok(Row::new(values))
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(number) => ValueRef::Integer(*number),
            Value::Real(number) => ValueRef::Real(*number),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
        }))
    }
}

/// Statements cached per transaction; one-off texts (multi-row upserts of varying length) are
/// few, so the cache stays small.
const MAX_CACHED_STATEMENTS: usize = 64;

/// The statement prepared (or taken from this transaction's cache) and its values in order.
fn prepared(
    tx: &RefCell<postgres::Transaction<'_>>,
    cache: &RefCell<HashMap<String, Statement>>,
    sql: &str,
    params: Params,
) -> Result<(Statement, Vec<Value>)> {
    let (text, values) = postgres_statement(sql, params)?;
    if let Some(statement) = cache.borrow().get(&text) {
        return Ok((statement.clone(), values));
    }
    let statement = tx.borrow_mut().prepare(&text)?;
    let mut cache = cache.borrow_mut();
    if cache.len() < MAX_CACHED_STATEMENTS {
        cache.insert(text, statement.clone());
    }
    Ok((statement, values))
}

/// The statement in PostgreSQL's numbering and its values in `$k` order.
fn postgres_statement(sql: &str, params: Params) -> Result<(String, Vec<Value>)> {
    let (sql, slots) = placeholders::to_postgres(sql).map_err(Error::Schema)?;
    let values = match (slots, params) {
        (_, Params::None) => Vec::new(),
        (Slots::Positional, Params::Positional(values)) => values,
        (Slots::Named(names), Params::Named(pairs)) => names
            .iter()
            .map(|name| {
                pairs
                    .iter()
                    .find(|(given, _)| given == name)
                    .map(|(_, value)| value.clone())
                    .ok_or_else(|| Error::Schema(format!("no value for parameter {name}")))
            })
            .collect::<Result<_>>()?,
        (Slots::Named(names), Params::Positional(_)) => {
            return Err(Error::Schema(format!(
                "named parameters {names:?} given positional values"
            )))
        }
        (Slots::Positional, Params::Named(_)) => {
            return Err(Error::Schema(
                "positional parameters given named values".into(),
            ))
        }
    };
    Ok((sql, values))
}

fn postgres_refs(values: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|value| value as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

fn postgres_row(row: &postgres::Row) -> Result<Row> {
    use postgres::types::Type;
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(index)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(index)?
                .map(|number| Value::Int(i64::from(number)))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(index)?
                .map(|number| Value::Int(i64::from(number)))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(index)?
                .map(|flag| Value::Int(i64::from(flag)))
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(index)?.map(Value::Real)
        } else if *ty == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(index)?
                .map(|number| Value::Real(f64::from(number)))
        } else if [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(ty) {
            row.try_get::<_, Option<String>>(index)?.map(Value::Text)
        } else {
            return Err(Error::Conversion {
                column: index,
                message: format!("column type {ty} is not one the store reads (cast it)"),
            });
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row::new(values))
}

impl postgres::types::ToSql for Value {
    /// Converts to whatever type PostgreSQL inferred for the parameter, where that loses
    /// nothing: an integer may fill an INT4 or BOOL slot, text any text slot.
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        use postgres::types::{IsNull, Type};
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(number) => match *ty {
                Type::INT8 => number.to_sql(ty, out),
                Type::INT4 => i32::try_from(*number)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*number)?.to_sql(ty, out),
                Type::BOOL => (*number != 0).to_sql(ty, out),
                #[allow(clippy::cast_precision_loss)]
                Type::FLOAT8 => (*number as f64).to_sql(ty, out),
                _ => Err(format!("an integer for a {ty} parameter").into()),
            },
            Value::Real(number) => match *ty {
                Type::FLOAT8 => number.to_sql(ty, out),
                _ => Err(format!("a float for a {ty} parameter").into()),
            },
            Value::Text(text) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
                    text.as_str().to_sql(ty, out)
                }
                _ => Err(format!("text for a {ty} parameter").into()),
            },
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}
