//! Proxy enrollment (`POST /v1/proxies/enroll`): a starting Envoy presents the shared
//! enrollment token and gets a credential of its own, which it then presents on every sync
//! call. The filter builds the request and reads the answer; the control service validates
//! the request with the same rules, so a name one side accepts is never one the other refuses.
//!
//! Read tolerantly (unknown fields ignored) like every wire message.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fields::FieldError;

/// Where a proxy enrolls.
pub const ENROLL_PATH: &str = "/v1/proxies/enroll";
/// Every proxy credential starts with this (an enrollment token with [`ENROLLMENT_PREFIX`]),
/// so a leaked one is recognisable and never mistaken for an API key or admin token.
pub const CREDENTIAL_PREFIX: &str = "kgp_";
pub const ENROLLMENT_PREFIX: &str = "kge_";
/// A proxy's name: at most this many characters (an Istio node id is ~100).
pub const MAX_NAME_CHARS: usize = 253;
/// At most this many labels, each name and value at most [`MAX_LABEL_CHARS`].
pub const MAX_LABELS: usize = 16;
pub const MAX_LABEL_CHARS: usize = 63;
/// A filter version as reported: at most this many characters.
pub const MAX_VERSION_CHARS: usize = 64;

/// What a starting proxy says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// Stable across restarts (an Istio sidecar's node id, a host name): a proxy that enrolls
    /// again under its name keeps its identity and history, with a new credential.
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The filter's version.
    #[serde(default)]
    pub version: String,
}

/// The answer: the proxy's identity and its credential (shown once, stored hashed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollAnswer {
    pub proxy_id: String,
    pub credential: String,
}

fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~' | ':' | '/' | '@')
}

/// A proxy name: 1 to [`MAX_NAME_CHARS`] of `A-Z a-z 0-9 . _ - ~ : / @` (what node ids, pod
/// and host names are made of; nothing a listing could show as something else).
pub fn name(field: &str, text: &str) -> Result<(), FieldError> {
    if text.is_empty() || text.len() > MAX_NAME_CHARS || !text.chars().all(plain) {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_NAME_CHARS} of A-Z a-z 0-9 . _ - ~ : / @"),
        ));
    }
    Ok(())
}

/// Labels: at most [`MAX_LABELS`], names 1 to [`MAX_LABEL_CHARS`] of the name alphabet,
/// values at most [`MAX_LABEL_CHARS`] of it (empty allowed).
pub fn labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if labels.len() > MAX_LABELS {
        return Err(FieldError::new(
            field,
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    for (label, value) in labels {
        let good_name = !label.is_empty() && label.len() <= MAX_LABEL_CHARS;
        if !good_name || !label.chars().all(plain) {
            return Err(FieldError::new(
                field,
                format!("label names must be 1 to {MAX_LABEL_CHARS} of A-Z a-z 0-9 . _ - ~ : / @"),
            ));
        }
        if value.len() > MAX_LABEL_CHARS || !value.chars().all(plain) {
            return Err(FieldError::new(
                format!("{field}.{label}"),
                format!("must be at most {MAX_LABEL_CHARS} of A-Z a-z 0-9 . _ - ~ : / @"),
            ));
        }
    }
    Ok(())
}

/// A reported version: at most [`MAX_VERSION_CHARS`] of the name alphabet (`+` too).
pub fn version(field: &str, text: &str) -> Result<(), FieldError> {
    let good = text.chars().all(|c| plain(c) || c == '+');
    if text.len() > MAX_VERSION_CHARS || !good {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_VERSION_CHARS} of A-Z a-z 0-9 . _ - + ~ : / @"),
        ));
    }
    Ok(())
}

/// Every rule of a request, first failure named.
pub fn validate(request: &EnrollRequest) -> Result<(), FieldError> {
    name("name", &request.name)?;
    labels("labels", &request.labels)?;
    version("version", &request.version)
}

/// Whether `text` has the shape of a proxy credential (the filter keeps only such answers).
pub fn is_credential(text: &str) -> bool {
    text.strip_prefix(CREDENTIAL_PREFIX).is_some_and(|rest| {
        (20..=64).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_node_ids_and_refuse_spaces_and_controls() {
        assert!(name(
            "name",
            "sidecar~10.1.2.3~web-5d9f.default~default.svc.cluster.local"
        )
        .is_ok());
        assert!(name("name", "envoy-1").is_ok());
        for bad in ["", "a b", "a\nb", "naïve", &"x".repeat(254)] {
            assert!(name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_are_bounded() {
        let mut labels_ok = BTreeMap::new();
        labels_ok.insert("zone".to_string(), "eu-west-1a".to_string());
        labels_ok.insert("pod".to_string(), String::new());
        assert!(labels("labels", &labels_ok).is_ok());
        let mut bad_value = labels_ok.clone();
        bad_value.insert("cluster".into(), "a b".into());
        assert_eq!(
            labels("labels", &bad_value).unwrap_err().field,
            "labels.cluster"
        );
        let many: BTreeMap<_, _> = (0..17).map(|i| (format!("l{i}"), String::new())).collect();
        assert!(labels("labels", &many).is_err());
    }

    #[test]
    fn requests_are_read_tolerantly() {
        let request: EnrollRequest =
            serde_json::from_str(r#"{"name":"e1","later":[1],"version":"0.3.0+abc"}"#).unwrap();
        assert_eq!(request.name, "e1");
        assert!(validate(&request).is_ok());
        assert!(serde_json::from_str::<EnrollRequest>(r#"{"labels":{}}"#).is_err());
    }

    #[test]
    fn credentials_have_their_shape() {
        assert!(is_credential(&format!(
            "{CREDENTIAL_PREFIX}{}",
            "a".repeat(40)
        )));
        assert!(!is_credential(&format!(
            "{ENROLLMENT_PREFIX}{}",
            "a".repeat(40)
        )));
        assert!(!is_credential("kgp_short"));
        assert!(!is_credential(&format!(
            "{CREDENTIAL_PREFIX}{} ",
            "a".repeat(40)
        )));
    }
}
