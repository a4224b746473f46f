//! `keys check KEY`: what a key's shape says about it, offline (the contract's key format);
//! and reading a key given as `-` from standard input, so it stays out of the process list.

use crate::cli::client::error::ClientError;
use keygate_contract::key_format::{self, KeyShape};
use serde::Serialize;
use std::io::BufRead;

/// What the check found, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyCheck {
    /// A key of a shape Keygate issues, with a checksum that holds if it has one.
    pub valid: bool,
    /// `checksummed`, `legacy` (issued before checksums) or `unknown`.
    pub format: &'static str,
    /// `live` or `test`; null for an unknown shape.
    pub environment: Option<&'static str>,
    /// `valid`, `invalid` or `none` (a legacy or unknown key has none).
    pub checksum: &'static str,
    /// `pk_live_…wxyz`: never the whole key.
    pub redacted: String,
}

pub fn check(key: &str) -> KeyCheck {
    let redacted = keygate_contract::key_hash::redact(key);
    match key_format::classify(key) {
        KeyShape::Checksummed {
            environment,
            checksum_ok,
        } => KeyCheck {
            valid: checksum_ok,
            format: "checksummed",
            environment: Some(environment.as_str()),
            checksum: if checksum_ok { "valid" } else { "invalid" },
            redacted,
        },
        KeyShape::Legacy { environment } => KeyCheck {
            valid: true,
            format: "legacy",
            environment: Some(environment.as_str()),
            checksum: "none",
            redacted,
        },
        KeyShape::Unknown => KeyCheck {
            valid: false,
            format: "unknown",
            environment: None,
            checksum: "none",
            redacted,
        },
    }
}

/// The lines the check prints for people.
pub fn describe(found: &KeyCheck) -> String {
    let verdict = match (found.format, found.checksum) {
        ("checksummed", "valid") => "a well-formed Keygate key; its checksum holds",
        ("checksummed", _) => {
            "NOT a valid Keygate key: its checksum does not hold (a typo or a truncated copy)"
        }
        ("legacy", _) => {
            "a well-formed Keygate key issued before checksums (nothing to verify offline)"
        }
        _ => {
            "NOT a Keygate key: expected pk_live_ or pk_test_ and 46 (or, before checksums, 40) \
             letters and digits"
        }
    };
    format!(
        "Key:         {}\nFormat:      {}\nEnvironment: {}\nChecksum:    {}\n{verdict}",
        found.redacted,
        found.format,
        found.environment.unwrap_or("-"),
        found.checksum,
    )
}

/// The key as given on the command line, or the first line of standard input for `-`.
pub fn read_key(given: &str) -> Result<String, ClientError> {
    if given != "-" {
        return Ok(given.trim().to_string());
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| ClientError::Usage(format!("reading the key from stdin: {error}")))?;
    let key = line.trim();
    if key.is_empty() {
        return Err(ClientError::Usage(
            "no key on standard input (give the key, or `-` and the key on stdin)".into(),
        ));
    }
    Ok(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_contract::key_format::with_checksum;

    #[test]
    fn each_shape_is_told_apart() {
        let good = with_checksum(&format!("pk_test_{}", "Q".repeat(40)));
        let found = check(&good);
        assert!(found.valid);
        assert_eq!(
            (found.format, found.environment, found.checksum),
            ("checksummed", Some("test"), "valid")
        );
        assert!(
            !found.redacted.contains(&good[8..40]),
            "never the whole key"
        );

        let typo = format!("{}0", &good[..good.len() - 1]);
        let typo = if typo == good {
            format!("{}1", &good[..good.len() - 1])
        } else {
            typo
        };
        let found = check(&typo);
        assert!(!found.valid);
        assert_eq!(found.checksum, "invalid");
        assert!(describe(&found).contains("NOT a valid Keygate key"));

        let legacy = check(&format!("pk_live_{}", "Q".repeat(40)));
        assert!(legacy.valid);
        assert_eq!((legacy.format, legacy.checksum), ("legacy", "none"));

        let unknown = check("sk_live_abc");
        assert!(!unknown.valid);
        assert_eq!((unknown.format, unknown.environment), ("unknown", None));
        assert!(describe(&unknown).contains("NOT a Keygate key"));
    }
}
