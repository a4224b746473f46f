//! Merge patches (RFC 7396) as the admin API reads them: an absent field keeps a value, `null`
//! clears it, a value replaces it. Every patchable field is an `Option<Option<T>>`.

use keygate_contract::FieldError;
use serde::{Deserialize, Deserializer};

/// Tells an explicit `null` (→ `Some(None)`) from an absent field (→ `None` via `default`).
pub fn present_or_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The value of a PATCH field that cannot be empty: absent is fine, `null` is refused, saying
/// what to send `instead` when there is a way to empty it.
pub fn not_null<T>(
    field: &str,
    instead: Option<&str>,
    value: Option<Option<T>>,
) -> Result<Option<T>, FieldError> {
    match value {
        Some(None) => {
            let instead = instead.map(|hint| format!("; {hint}")).unwrap_or_default();
            Err(FieldError::new(
                field,
                format!("must not be null (it cannot be cleared){instead}"),
            ))
        }
        Some(Some(value)) => Ok(Some(value)),
        None => Ok(None),
    }
}
