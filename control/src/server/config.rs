//! Start-up settings that need checking before the service may run: tokens and scopes.

use keygate_contract::FieldError;
use std::fmt;

pub const ADMIN_TOKEN_VAR: &str = "KEYGATE_ADMIN_TOKEN";
pub const SYNC_TOKEN_VAR: &str = "KEYGATE_SYNC_TOKEN";
const DEV_ADMIN_TOKEN: &str = "dev-admin-token";
const DEV_SYNC_TOKEN: &str = "dev-sync-token";
pub const ENROLLMENT_TOKEN_VAR: &str = "KEYGATE_ENROLLMENT_TOKEN";
const DEV_ENROLLMENT_TOKEN: &str = "kge_dev-enrollment-token";

/// The enrollment token from the environment (empty counts as unset), or the development one
/// with `dev`: `Ok(None)` when there is none; an error when it lacks the `kge_` prefix (a sync
/// or admin token put there by mistake would let anyone holding it enroll).
pub fn bootstrap_enrollment(
    value: Option<String>,
    dev: bool,
) -> Result<Option<(String, bool)>, String> {
    match value.filter(|token| !token.is_empty()) {
        Some(token) if token.starts_with(keygate_contract::enrollment::ENROLLMENT_PREFIX) => {
            Ok(Some((token, false)))
        }
        Some(_) => Err(format!(
            "{ENROLLMENT_TOKEN_VAR} must start with {} (an enrollment token, not a sync or admin token)",
            keygate_contract::enrollment::ENROLLMENT_PREFIX
        )),
        None if dev => Ok(Some((DEV_ENROLLMENT_TOKEN.to_string(), true))),
        None => Ok(None),
    }
}

/// The two tokens, and whether each is the `--dev` default (so it may be printed). The shared
/// sync token is `None` with `--no-shared-sync-token` (proxies present their own credentials).
#[derive(Debug, PartialEq, Eq)]
pub struct Tokens {
    pub admin: String,
    pub sync: Option<String>,
    pub admin_is_dev_default: bool,
    pub sync_is_dev_default: bool,
}

/// A start-up setting the service refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// These token variables are unset (or empty) and `--dev` was not given.
    MissingTokens(Vec<&'static str>),
    /// The admin and the sync token are the same.
    SameTokens,
    /// A configured scope is not a scope name the filter takes.
    Scope(FieldError),
    /// `KEYGATE_SCOPES` names no scope.
    NoScopes,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::MissingTokens(variables) => write!(
                f,
                "{} must be set (or run `serve --dev` for development tokens)",
                variables.join(" and ")
            ),
            ConfigError::SameTokens => write!(
                f,
                "{ADMIN_TOKEN_VAR} and {SYNC_TOKEN_VAR} must differ: proxies hold the sync token and must not be able to manage keys"
            ),
            ConfigError::Scope(error) => write!(f, "{error}"),
            ConfigError::NoScopes => write!(f, "KEYGATE_SCOPES: at least one scope is required"),
        }
    }
}

/// Tokens from the environment's values; empty counts as unset. Without `dev`, a missing
/// token is an error naming its variable; without `shared_sync`, the sync token is neither
/// needed nor used.
pub fn resolve_tokens(
    admin: Option<String>,
    sync: Option<String>,
    dev: bool,
    shared_sync: bool,
) -> Result<Tokens, ConfigError> {
    let admin = admin.filter(|token| !token.is_empty());
    let sync = sync.filter(|token| shared_sync && !token.is_empty());
    let wanted = |variable| variable == ADMIN_TOKEN_VAR || shared_sync;
    let missing: Vec<&'static str> = [(ADMIN_TOKEN_VAR, &admin), (SYNC_TOKEN_VAR, &sync)]
        .into_iter()
        .filter(|(variable, token)| token.is_none() && wanted(*variable))
        .map(|(variable, _)| variable)
        .collect();
    if !dev && !missing.is_empty() {
        return Err(ConfigError::MissingTokens(missing));
    }
    let tokens = Tokens {
        admin_is_dev_default: admin.is_none(),
        sync_is_dev_default: shared_sync && sync.is_none(),
        admin: admin.unwrap_or_else(|| DEV_ADMIN_TOKEN.into()),
        sync: shared_sync.then(|| sync.unwrap_or_else(|| DEV_SYNC_TOKEN.into())),
    };
    if tokens.sync.as_deref() == Some(tokens.admin.as_str()) {
        return Err(ConfigError::SameTokens);
    }
    Ok(tokens)
}

/// The comma-separated scope list, trimmed; at least one, each a scope name as the filter
/// reads them (`keygate_contract::fields::scope`).
pub fn parse_scopes(list: &str) -> Result<Vec<String>, ConfigError> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in list
        .split(',')
        .map(str::trim)
        .filter(|scope| !scope.is_empty())
    {
        // The filter's own rule for a scope name, so no configured scope is one it refuses.
        if let Err(error) = keygate_contract::fields::scope("KEYGATE_SCOPES", scope) {
            return Err(ConfigError::Scope(error));
        }
        if !scopes.iter().any(|known| known == scope) {
            scopes.push(scope.to_string());
        }
    }
    if scopes.is_empty() {
        return Err(ConfigError::NoScopes);
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tokens_are_named() {
        let error = resolve_tokens(None, Some("s".into()), false, true)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("KEYGATE_ADMIN_TOKEN must be set"),
            "{error}"
        );
        let error = resolve_tokens(Some("a".into()), Some(String::new()), false, true)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("KEYGATE_SYNC_TOKEN must be set"),
            "{error}"
        );
        let error = resolve_tokens(None, None, false, true)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("KEYGATE_ADMIN_TOKEN and KEYGATE_SYNC_TOKEN"),
            "{error}"
        );
    }

    #[test]
    fn dev_fills_only_the_missing_token() {
        let tokens = resolve_tokens(Some("mine".into()), None, true, true).unwrap();
        assert_eq!(tokens.admin, "mine");
        assert_eq!(tokens.sync.as_deref(), Some(DEV_SYNC_TOKEN));
        assert!(!tokens.admin_is_dev_default && tokens.sync_is_dev_default);
    }

    #[test]
    fn without_a_shared_sync_token_only_the_admin_token_is_needed() {
        let tokens = resolve_tokens(Some("a".into()), Some("s".into()), false, false).unwrap();
        assert_eq!(tokens.sync, None);
        assert!(!tokens.sync_is_dev_default);
        let error = resolve_tokens(None, None, false, false)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("KEYGATE_ADMIN_TOKEN must be set"),
            "{error}"
        );
    }

    #[test]
    fn the_enrollment_token_must_look_like_one() {
        assert_eq!(bootstrap_enrollment(None, false), Ok(None));
        assert_eq!(
            bootstrap_enrollment(Some(String::new()), true),
            Ok(Some((DEV_ENROLLMENT_TOKEN.to_string(), true)))
        );
        assert_eq!(
            bootstrap_enrollment(Some("kge_x".into()), true),
            Ok(Some(("kge_x".to_string(), false)))
        );
        assert!(bootstrap_enrollment(Some("dev-sync-token".into()), false).is_err());
    }

    #[test]
    fn identical_tokens_are_refused() {
        assert_eq!(
            resolve_tokens(Some("same".into()), Some("same".into()), false, true),
            Err(ConfigError::SameTokens)
        );
    }

    #[test]
    fn scopes_are_trimmed_and_checked() {
        assert_eq!(parse_scopes(" a, b ,,a").unwrap(), vec!["a", "b"]);
        assert_eq!(parse_scopes(" , "), Err(ConfigError::NoScopes));
        assert!(parse_scopes("ok,not ok").is_err());
    }
}
