//! Durations as the configuration writes them: a whole number and a unit (`250ms`, `10s`,
//! `5m`, `1h`).

use std::fmt;
use std::time::Duration;

/// Why a duration does not parse; `Display` says what is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    NoUnit { text: String },
    NotANumber { text: String },
    UnknownUnit { text: String, unit: String },
    TooLarge { text: String },
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::NoUnit { text } => write!(f, "{text:?} has no unit (use ms, s, m or h)"),
            DurationError::NotANumber { text } => {
                write!(f, "{text:?} does not start with a whole number")
            }
            DurationError::UnknownUnit { text, unit } => {
                write!(f, "{text:?} has unknown unit {unit:?} (use ms, s, m or h)")
            }
            DurationError::TooLarge { text } => write!(f, "{text:?} is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses `"250ms"`, `"10s"`, `"5m"`, `"1h"` (a whole number and a unit).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let owned = || text.to_string();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError::NoUnit { text: owned() })?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| DurationError::NotANumber { text: owned() })?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(DurationError::UnknownUnit {
                text: owned(),
                unit: unit.to_string(),
            })
        }
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError::TooLarge { text: owned() })
}
