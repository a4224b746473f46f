//! The values that cross the storage interface, in both directions: what a statement is given
//! and what a row holds. Our own small type rather than either driver's, so store code is written
//! once: SQLite and PostgreSQL disagree on booleans (PostgreSQL has a type, SQLite stores 0 and
//! 1) and on how strictly a Rust integer must match a column type.

use super::error::Error;
use crate::domain::clock;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// What can be bound as a statement parameter. Booleans are stored as 0 and 1 on both backends.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}

impl ToValue for i32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

/// An instant is stored as its RFC 3339 text in UTC (`clock::format`): the columns are text on
/// both backends, and the text sorts as the instant does.
impl ToValue for DateTime<Utc> {
    fn to_value(&self) -> Value {
        Value::Text(clock::format(*self))
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// What a column can be read as.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, String>;
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(value.clone())
    }
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Int(number) => Ok(*number),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl FromValue for u64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        let number = i64::from_value(value)?;
        u64::try_from(number).map_err(|_| format!("expected a count, found {number}"))
    }
}

impl FromValue for u32 {
    fn from_value(value: &Value) -> Result<Self, String> {
        let number = i64::from_value(value)?;
        u32::try_from(number).map_err(|_| format!("expected a small count, found {number}"))
    }
}

impl FromValue for usize {
    fn from_value(value: &Value) -> Result<Self, String> {
        let number = i64::from_value(value)?;
        usize::try_from(number).map_err(|_| format!("expected a count, found {number}"))
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(i64::from_value(value)? != 0)
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Real(number) => Ok(*number),
            // An integer column read as a float loses nothing this service stores.
            #[allow(clippy::cast_precision_loss)]
            Value::Int(number) => Ok(*number as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl FromValue for DateTime<Utc> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => clock::parse(text)
                .ok_or_else(|| format!("expected an RFC 3339 instant, found {text:?}")),
            other => Err(format!("expected an instant, found {other:?}")),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One row, read in full before the caller sees it, so no driver borrow outlives the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    pub fn new(values: Vec<Value>) -> Row {
        Row { values }
    }

    /// The column at `index` (0-based, in the order of the SELECT list).
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, Error> {
        let value = self.values.get(index).ok_or_else(|| Error::Conversion {
            column: index,
            message: format!("the row has {} columns", self.values.len()),
        })?;
        T::from_value(value).map_err(|message| Error::Conversion {
            column: index,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_travel_as_integers_and_read_back() {
        assert_eq!(true.to_value(), Value::Int(1));
        let row = Row::new(vec![Value::Int(0), Value::Int(7)]);
        assert!(!row.get::<bool>(0).unwrap());
        assert!(row.get::<bool>(1).unwrap());
    }

    #[test]
    fn null_reads_as_none_and_a_wrong_type_names_the_column() {
        let row = Row::new(vec![Value::Null, Value::Text("x".into())]);
        assert_eq!(row.get::<Option<i64>>(0).unwrap(), None);
        let error = row.get::<i64>(1).unwrap_err();
        assert!(
            matches!(error, Error::Conversion { column: 1, .. }),
            "{error}"
        );
        assert!(row.get::<String>(2).is_err());
    }

    #[test]
    fn instants_travel_as_utc_text_and_read_back() {
        let instant = clock::parse("2030-01-01T02:00:00+02:00").unwrap();
        assert_eq!(
            instant.to_value(),
            Value::Text("2030-01-01T00:00:00Z".into())
        );
        let row = Row::new(vec![instant.to_value(), Value::Text("soon".into())]);
        assert_eq!(row.get::<DateTime<Utc>>(0).unwrap(), instant);
        assert!(matches!(
            row.get::<DateTime<Utc>>(1),
            Err(Error::Conversion { column: 1, .. })
        ));
    }

    #[test]
    fn negative_numbers_are_not_counts() {
        let row = Row::new(vec![Value::Int(-1)]);
        assert!(row.get::<u64>(0).is_err());
        assert_eq!(row.get::<i64>(0).unwrap(), -1);
    }
}
