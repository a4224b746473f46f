//! The body of a leak reported by hand (`POST /v1/keys/leaked`).

use crate::domain::leaks::{MAX_LABEL_CHARS, MAX_URL_CHARS};
use keygate_contract::FieldError;
use serde::Deserialize;

/// Body of `POST /v1/keys/leaked`: the leaked secret and, optionally, where it was found.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakedKeyRequest {
    pub key: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
}

impl LeakedKeyRequest {
    /// Refuses a field longer than what is kept (a person's report is read strictly).
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.key.is_empty() || self.key.len() > 256 {
            return Err(FieldError::new(
                "key",
                "must be an API key (1 to 256 characters)",
            ));
        }
        let too_long = |text: &Option<String>, max: usize| {
            text.as_ref().is_some_and(|text| text.chars().count() > max)
        };
        if too_long(&self.url, MAX_URL_CHARS) {
            return Err(FieldError::new(
                "url",
                format!("at most {MAX_URL_CHARS} characters"),
            ));
        }
        if too_long(&self.source, MAX_LABEL_CHARS) {
            return Err(FieldError::new(
                "source",
                format!("at most {MAX_LABEL_CHARS} characters"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: &str, url: Option<String>, source: Option<String>) -> LeakedKeyRequest {
        LeakedKeyRequest {
            key: key.into(),
            url,
            source,
        }
    }

    #[test]
    fn each_field_is_bounded() {
        assert!(request("pk_live_x", Some("u".repeat(MAX_URL_CHARS)), None)
            .validate()
            .is_ok());
        let cases = [
            (request("", None, None), "key"),
            (request(&"k".repeat(257), None, None), "key"),
            (
                request("k", Some("u".repeat(MAX_URL_CHARS + 1)), None),
                "url",
            ),
            (
                request("k", None, Some("s".repeat(MAX_LABEL_CHARS + 1))),
                "source",
            ),
        ];
        for (request, field) in cases {
            assert_eq!(request.validate().unwrap_err().field, field);
        }
    }
}
