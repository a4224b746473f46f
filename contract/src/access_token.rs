//! OAuth 2.0 access tokens (docs/security.md, "OAuth 2.0"): what the control service signs into
//! a token and the filter reads back from Envoy's `jwt_authn` after it verified the signature.
//! A token is a pointer to its key, never a key of its own: the filter applies the key's policy,
//! narrowed by the token's scopes.

/// The JWT `typ` of an access token (RFC 9068 §2.1).
pub const TOKEN_TYPE: &str = "at+jwt";

/// The key id the token was issued to (RFC 9068: also `client_id`).
pub const SUBJECT_CLAIM: &str = "sub";

/// Who signed the token: the filter takes only tokens of its configured issuer, since several
/// `jwt_authn` providers may write their payloads to the same place (Istio does).
pub const ISSUER_CLAIM: &str = "iss";

/// The scopes the token carries, space-separated (RFC 9068 §2.2.3, RFC 6749 §3.3), for clients
/// and other resource servers; absent when the token carries the key's own scopes.
pub const SCOPE_CLAIM: &str = "scope";

/// A private claim: the scopes the filter enforces, always present: space-separated scopes, or
/// `ALL_KEY_SCOPES`. Not `scope` itself: meshes rewrite that claim into a list in metadata (Istio
/// normalises `scope`), which a filter could only read as missing, and a missing restriction
/// must never read as none.
pub const KEY_SCOPE_CLAIM: &str = "keygate_scope";

/// `keygate_scope` of a token that carries its key's scopes, whatever they are when it is used
/// (never a scope name: those cannot hold `*`).
pub const ALL_KEY_SCOPES: &str = "*";

/// A private claim: the key's hash (64 lowercase hex digits, `key_hash::hex_digest`), which is
/// what the filter's store is keyed by. It names the key the token was issued from, so a rotated
/// successor (another hash) never inherits its predecessor's tokens. A SHA-256 of a random key
/// reveals nothing of the key.
pub const KEY_HASH_CLAIM: &str = "keygate_key_hash";

/// The scopes of a `scope` claim or parameter, in order (empty entries from doubled spaces are
/// skipped).
pub fn scopes(claim: &str) -> impl Iterator<Item = &str> {
    claim.split(' ').filter(|scope| !scope.is_empty())
}

/// Whether the `scope` claim lists `scope`.
pub fn grants(claim: &str, scope: &str) -> bool {
    scopes(claim).any(|granted| granted == scope)
}

/// The `scope` claim for these scopes: space-separated, as RFC 6749 writes them.
pub fn scope_claim<S: AsRef<str>>(scopes: &[S]) -> String {
    let mut claim = String::new();
    for scope in scopes {
        if !claim.is_empty() {
            claim.push(' ');
        }
        claim.push_str(scope.as_ref());
    }
    claim
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_lists_its_scopes_and_grants_only_those() {
        assert_eq!(
            scopes("submit_job  list_models").collect::<Vec<_>>(),
            ["submit_job", "list_models"]
        );
        assert!(grants("submit_job list_models", "list_models"));
        assert!(!grants("submit_job list_models", "list"));
        assert!(!grants("", "submit_job"));
        assert_eq!(scope_claim(&["a", "b"]), "a b");
        assert_eq!(scope_claim::<&str>(&[]), "");
    }
}
