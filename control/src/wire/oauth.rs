//! OAuth 2.0 bodies on the wire: the token response (RFC 6749 §5.1), its errors (§5.2) and the
//! authorization server metadata (RFC 8414). These follow the RFCs, not the admin API's shapes.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer` (RFC 6750).
    pub token_type: String,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenError {
    pub error: String,
    pub error_description: String,
}

/// RFC 8414 §2, what a client library reads to find the endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub grant_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
}

impl ServerMetadata {
    /// The metadata of an issuer at `issuer` (no trailing slash) offering `scopes`.
    pub fn for_issuer(issuer: &str, scopes: &[String]) -> ServerMetadata {
        let base = issuer.trim_end_matches('/');
        ServerMetadata {
            issuer: issuer.to_string(),
            token_endpoint: format!("{base}/oauth/token"),
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            grant_types_supported: vec!["client_credentials".into()],
            token_endpoint_auth_methods_supported: vec![
                "client_secret_basic".into(),
                "client_secret_post".into(),
            ],
            // Required by RFC 8414; no authorization endpoint, so no response types.
            response_types_supported: Vec::new(),
            scopes_supported: scopes.to_vec(),
        }
    }
}
