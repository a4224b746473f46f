//! OAuth 2.0 client credentials (RFC 6749 §4.4), the pure part: reading a token request, the
//! errors RFC 6749 §5.2 names, which scopes a token gets, what it claims (RFC 9068), and when a
//! signing key signs, is published and is retired. docs/security.md, "OAuth 2.0".

use chrono::{DateTime, Duration, Utc};
use keygate_contract::access_token;
use keygate_contract::fields;
use serde::Serialize;

/// The only grant: a client (an API key) asks for a token for itself.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// A token request's error, as RFC 6749 §5.2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    UnsupportedGrantType,
    InvalidScope,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
        }
    }
}

/// A refused token request: the code, a description a person can act on, and whether the
/// client tried HTTP Basic (RFC 6749 §5.2: then 401 with `WWW-Authenticate: Basic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
    pub used_basic: bool,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> OAuthError {
        OAuthError {
            code,
            description: description.into(),
            used_basic: false,
        }
    }

    pub fn status(&self) -> u16 {
        match self.code {
            ErrorCode::InvalidClient => 401,
            _ => 400,
        }
    }
}

/// The client's id (a key id) and secret (the API key itself).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, not even in a debug print.
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A token request as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub client: ClientCredentials,
    /// The scopes asked for; `None`: the key's.
    pub scope: Option<Vec<String>>,
    pub used_basic: bool,
}

fn invalid_request(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, description)
}

/// RFC 6749 §2.3.1: HTTP Basic with the id and secret each form-urlencoded first.
fn basic_credentials(header: &str) -> Result<ClientCredentials, OAuthError> {
    use base64::Engine as _;
    let bad = || {
        let mut error = OAuthError::new(
            ErrorCode::InvalidClient,
            "the Authorization header must be HTTP Basic with client_id:client_secret",
        );
        error.used_basic = true;
        error
    };
    let (scheme, encoded) = header.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let decode = |part: &str| -> String {
        url::form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Ok(ClientCredentials {
        client_id: decode(id),
        client_secret: decode(secret),
    })
}

/// Reads `POST /oauth/token`: a form body (RFC 6749 §4.4.2) and the client's authentication,
/// HTTP Basic or `client_id`/`client_secret` in the body (§2.3.1), never both.
pub fn parse_token_request(
    content_type: Option<&str>,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<TokenRequest, OAuthError> {
    let is_form = content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(invalid_request(
            "send the request as application/x-www-form-urlencoded",
        ));
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        // RFC 6749 §3.2: a parameter must not be sent twice.
        if params.iter().any(|(seen, _)| *seen == name) {
            return Err(invalid_request(format!("{name} is given more than once")));
        }
        params.push((name.into_owned(), value.into_owned()));
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(seen, _)| seen == name)
            .map(|(_, value)| value.as_str())
    };
    let basic = authorization.map(basic_credentials).transpose()?;
    let used_basic = basic.is_some();
    let with_basic = |mut error: OAuthError| {
        error.used_basic = used_basic;
        error
    };
    let client = match (basic, param("client_id"), param("client_secret")) {
        (Some(_), _, Some(_)) => {
            return Err(with_basic(invalid_request(
                "authenticate the client one way: HTTP Basic or client_secret in the body, not both",
            )))
        }
        (Some(basic), Some(id), None) if id != basic.client_id => {
            return Err(with_basic(invalid_request(
                "client_id in the body differs from the one in the Authorization header",
            )))
        }
        (Some(basic), _, None) => basic,
        (None, Some(id), Some(secret)) => ClientCredentials {
            client_id: id.to_string(),
            client_secret: secret.to_string(),
        },
        (None, _, _) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidClient,
                "client authentication is required: the key id as client_id and the API key as client_secret",
            ))
        }
    };
    match param("grant_type") {
        None => return Err(with_basic(invalid_request("grant_type is required"))),
        Some(CLIENT_CREDENTIALS) => {}
        Some(other) => {
            return Err(with_basic(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!("grant_type {other:?} is not supported; use client_credentials"),
            )))
        }
    }
    let scope = match param("scope") {
        None => None,
        Some(scope) => {
            let scopes: Vec<String> = access_token::scopes(scope).map(str::to_string).collect();
            if scopes.is_empty() {
                return Err(with_basic(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "scope is empty; leave it out for the key's scopes",
                )));
            }
            if let Some(bad) = scopes.iter().find(|s| fields::scope("scope", s).is_err()) {
                return Err(with_basic(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("{bad:?} is not a scope name"),
                )));
            }
            Some(scopes)
        }
    };
    Ok(TokenRequest {
        client,
        scope,
        used_basic,
    })
}

/// The scopes a token gets: what was asked for, each held by the key (a key without scopes
/// holds every scope), or, asked for none, the key's own. `Ok(None)`: no `scope` claim (a key
/// without scopes asked for none: the token follows whatever the key holds when used).
pub fn granted_scopes(
    key_scopes: &[String],
    requested: Option<&[String]>,
) -> Result<Option<Vec<String>>, OAuthError> {
    let Some(requested) = requested else {
        return Ok((!key_scopes.is_empty()).then(|| key_scopes.to_vec()));
    };
    let mut granted: Vec<String> = Vec::with_capacity(requested.len());
    for scope in requested {
        if !key_scopes.is_empty() && !key_scopes.contains(scope) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("the key does not hold the {scope} scope; a token can only narrow its key's scopes"),
            ));
        }
        if !granted.contains(scope) {
            granted.push(scope.clone());
        }
    }
    Ok(Some(granted))
}

/// What an access token says (RFC 9068 §2.2), and the key hash the filter looks it up by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scope: Option<String>,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub keygate_key_hash: String,
    /// The scopes the filter enforces (`access_token::KEY_SCOPE_CLAIM`).
    pub keygate_scope: String,
}

/// When a signing key was made and from when it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTimes {
    pub kid: String,
    pub active_from: DateTime<Utc>,
}

/// How signing keys turn over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySchedule {
    /// A token's lifetime: a key stays published this long after it last signed.
    pub token_lifetime: Duration,
    /// How long a key signs before a successor takes over.
    pub rotation: Duration,
    /// How long a new key is published before it signs, so every Envoy's cached key set
    /// holds it by then (at least `jwt_authn`'s `cache_duration`).
    pub publish_ahead: Duration,
}

/// Leeway for clocks and in-flight requests after a key's last token expired.
const RETIRE_LEEWAY_SECONDS: i64 = 60;

impl KeySchedule {
    /// The key that signs now: the newest already active.
    pub fn signer<'k>(&self, keys: &'k [KeyTimes], now: DateTime<Utc>) -> Option<&'k KeyTimes> {
        keys.iter()
            .filter(|key| key.active_from <= now)
            .max_by_key(|key| (key.active_from, key.kid.clone()))
    }

    /// Whether a successor should be made now: none signs, or the signer is due and no
    /// successor waits to take over.
    pub fn rotation_due(&self, keys: &[KeyTimes], now: DateTime<Utc>) -> bool {
        let Some(signer) = self.signer(keys, now) else {
            return !keys.iter().any(|key| key.active_from > now);
        };
        signer.active_from + self.rotation <= now && !keys.iter().any(|key| key.active_from > now)
    }

    /// When `key` stopped signing: when the first key after it took over, if one has.
    fn superseded_at(
        keys: &[KeyTimes],
        key: &KeyTimes,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        keys.iter()
            .filter(|other| {
                (other.active_from, &other.kid) > (key.active_from, &key.kid)
                    && other.active_from <= now
            })
            .map(|other| other.active_from)
            .min()
    }

    /// Whether `key` belongs in the published key set: waiting to sign, signing, or stopped
    /// less than a token lifetime (and a minute) ago.
    pub fn published(&self, keys: &[KeyTimes], key: &KeyTimes, now: DateTime<Utc>) -> bool {
        match Self::superseded_at(keys, key, now) {
            None => true,
            Some(at) => at + self.token_lifetime + Duration::seconds(RETIRE_LEEWAY_SECONDS) > now,
        }
    }
}

#[cfg(test)]
mod tests;
