//! How the filter authenticates to the control service: a token given in the configuration
//! (the shared sync token, or a proxy credential an admin issued), or an enrollment token with
//! which the filter obtains its own credential at start (`sync/enroll.rs`). Exactly one of the
//! four ways to give them; the proxy's name and labels only with an enrollment token.

use std::collections::BTreeMap;

use keygate_contract::enrollment;

use super::raw::RawControl;
use super::{field_error, ConfigError, EnvLookup};

/// Enrolling at start: the enrollment token and what the proxy says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub token: String,
    /// `None`: Envoy's node id (an Istio sidecar's is unique per pod), else a name the VM makes.
    pub proxy_name: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// The bearer the filter presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAuth {
    Token(String),
    Enroll(Enrollment),
}

fn secret(
    field: &str,
    value: Option<String>,
    env_field: &str,
    env_var: Option<String>,
    env: EnvLookup<'_>,
) -> Result<Option<String>, ConfigError> {
    let secret = match (value, env_var) {
        (Some(_), Some(_)) => {
            return Err(field_error(field, format!("set either {field} or {env_field}, not both")))
        }
        (Some(value), None) => value,
        (None, Some(var)) => env(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
            field_error(
                env_field,
                format!("environment variable {var} is not set in the Wasm VM (vm_config.environment_variables)"),
            )
        })?,
        (None, None) => return Ok(None),
    };
    if secret.is_empty() || secret.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(field_error(
            field,
            "must be non-empty without spaces or control characters",
        ));
    }
    Ok(Some(secret))
}

pub(super) fn control_auth(
    raw: &mut RawControl,
    env: EnvLookup<'_>,
) -> Result<ControlAuth, ConfigError> {
    let token = secret(
        "control.token",
        raw.token.take(),
        "control.token_env",
        raw.token_env.take(),
        env,
    )?;
    let enrollment_token = secret(
        "control.enrollment_token",
        raw.enrollment_token.take(),
        "control.enrollment_token_env",
        raw.enrollment_token_env.take(),
        env,
    )?;
    let proxy_name = raw.proxy_name.take();
    let labels = std::mem::take(&mut raw.proxy_labels);
    match (token, enrollment_token) {
        (Some(_), Some(_)) => Err(field_error(
            "control.enrollment_token",
            "set either a token or an enrollment token, not both",
        )),
        (None, None) => Err(field_error(
            "control.token",
            "token, token_env, enrollment_token or enrollment_token_env is required",
        )),
        (Some(token), None) => {
            if proxy_name.is_some() || !labels.is_empty() {
                return Err(field_error(
                    "control.proxy_name",
                    "proxy_name and proxy_labels go with enrollment_token (an issued credential names its proxy)",
                ));
            }
            Ok(ControlAuth::Token(token))
        }
        (None, Some(token)) => {
            if !token.starts_with(enrollment::ENROLLMENT_PREFIX) {
                return Err(field_error(
                    "control.enrollment_token",
                    format!(
                        "must be an enrollment token ({}…, from POST /v1/enrollment-tokens)",
                        enrollment::ENROLLMENT_PREFIX
                    ),
                ));
            }
            if let Some(name) = &proxy_name {
                enrollment::name("control.proxy_name", name)
                    .map_err(|error| field_error(error.field, error.message))?;
            }
            enrollment::labels("control.proxy_labels", &labels)
                .map_err(|error| field_error(error.field, error.message))?;
            Ok(ControlAuth::Enroll(Enrollment {
                token,
                proxy_name,
                labels,
            }))
        }
    }
}
