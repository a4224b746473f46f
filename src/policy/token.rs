//! OAuth 2.0 access tokens at the edge (docs/security.md, "OAuth 2.0"). Envoy's `jwt_authn`
//! verifies a token's signature, issuer, audience and lifetime, and writes its payload into the
//! request's dynamic metadata, which a client cannot write; the filter reads the few claims it
//! needs from there (`TokenSource` names where) and applies the key's policy to them. A token
//! `jwt_authn` refused is left in the `Authorization` header, where `looks_like_jwt` tells it
//! from a key so it is answered as a token (`invalid_token`) without a lookup.

use keygate_contract::access_token::{
    ALL_KEY_SCOPES, ISSUER_CLAIM, KEY_HASH_CLAIM, KEY_SCOPE_CLAIM, SUBJECT_CLAIM,
};
use keygate_contract::key_hash::{parse_hex_digest, Digest};

/// Where `jwt_authn` puts a verified token's payload: the metadata namespace (its filter name)
/// and the provider's `payload_in_metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSource {
    pub metadata_namespace: String,
    pub payload_key: String,
    /// The only `iss` taken.
    pub issuer: String,
}

impl TokenSource {
    /// The property path of one claim of the verified payload.
    pub fn claim_path<'s>(&'s self, claim: &'s str) -> [&'s str; 5] {
        [
            "metadata",
            "filter_metadata",
            &self.metadata_namespace,
            &self.payload_key,
            claim,
        ]
    }
}

/// The claims of a verified access token the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The hash of the key it was issued from: what the store is keyed by.
    pub key_digest: Digest,
    /// The key id it was issued to; must be the id of the key found by `key_digest`.
    pub subject: String,
    /// The scopes it carries; `None`: the key's own.
    pub scope: Option<String>,
}

/// What the metadata says about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenClaims {
    /// No verified token: the request carries none, or `jwt_authn` refused it.
    Absent,
    Verified(AccessToken),
    /// A verified payload without the claims Keygate signs into its tokens (another issuer's
    /// token, or ours from a version that did not sign them): refused as an invalid token.
    Unusable,
}

fn text(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes.and_then(|bytes| String::from_utf8(bytes).ok())
}

/// The claims from what the host returned for each (`read(claim)`: the property's bytes; Envoy
/// gives a string claim as its bytes, anything else in another encoding, which fails here).
/// Anything missing or of another issuer makes the token unusable, never less restricted.
pub fn read(issuer: &str, mut read: impl FnMut(&str) -> Option<Vec<u8>>) -> TokenClaims {
    let Some(subject) = read(SUBJECT_CLAIM) else {
        return TokenClaims::Absent;
    };
    if read(ISSUER_CLAIM).as_deref() != Some(issuer.as_bytes()) {
        return TokenClaims::Unusable;
    }
    let subject = match String::from_utf8(subject) {
        Ok(subject) if !subject.is_empty() => subject,
        _ => return TokenClaims::Unusable,
    };
    let Some(key_digest) = text(read(KEY_HASH_CLAIM)).and_then(|hex| parse_hex_digest(&hex)) else {
        return TokenClaims::Unusable;
    };
    let scope = match text(read(KEY_SCOPE_CLAIM)) {
        None => return TokenClaims::Unusable,
        Some(all) if all == ALL_KEY_SCOPES => None,
        Some(scope) => Some(scope),
    };
    TokenClaims::Verified(AccessToken {
        key_digest,
        subject,
        scope,
    })
}

/// The scopes a token's request may use, as `x-keygate-scopes` carries them (comma-separated):
/// the key's (`key_scopes`, comma-separated, empty for every scope) that the token's `scope`
/// also grants. Never empty-for-all when the token is narrowed: a token narrowed to scopes its
/// key lacks gets `-`, a name no scope can have, so an upstream never reads "full access".
pub fn narrowed_scopes(key_scopes: &str, token_scope: &str) -> String {
    let granted: Vec<&str> = if key_scopes.is_empty() {
        keygate_contract::access_token::scopes(token_scope).collect()
    } else {
        key_scopes
            .split(',')
            .filter(|scope| keygate_contract::access_token::grants(token_scope, scope))
            .collect()
    };
    if granted.is_empty() {
        return NO_SCOPES.to_string();
    }
    granted.join(",")
}

/// `x-keygate-scopes` of a token that grants none of its key's scopes.
pub const NO_SCOPES: &str = "-";

/// Whether a bearer value is a compact JWS (`header.payload.signature`, base64url, the header a
/// JSON object): keys never hold a dot, so nothing a key can be is taken for a token.
pub fn looks_like_jwt(value: &str) -> bool {
    // Every key fails here, on its first byte: the request path with a key pays nothing more.
    if !value.starts_with("eyJ") {
        return false;
    }
    let mut parts = value.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    header.starts_with("eyJ")
        && !payload.is_empty()
        && [header, payload, signature].iter().all(|part| {
            part.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_contract::key_hash::{digest_key, hash_key};
    use std::collections::HashMap;

    const ISSUER: &str = "https://api.example";

    fn claims(pairs: &[(&str, &[u8])]) -> TokenClaims {
        let map: HashMap<&str, Vec<u8>> = pairs.iter().map(|(k, v)| (*k, v.to_vec())).collect();
        read(ISSUER, |claim| map.get(claim).cloned())
    }

    #[test]
    fn a_verified_payload_gives_the_key_and_the_scopes() {
        let hash = hash_key("pk_live_x");
        let base: [(&str, &[u8]); 3] = [
            ("sub", b"key_1"),
            ("iss", ISSUER.as_bytes()),
            (KEY_HASH_CLAIM, hash.as_bytes()),
        ];
        let with_scope = |scope: &'static [u8]| {
            let mut pairs = base.to_vec();
            pairs.push((KEY_SCOPE_CLAIM, scope));
            claims(&pairs)
        };
        assert_eq!(
            with_scope(b"submit_job"),
            TokenClaims::Verified(AccessToken {
                key_digest: digest_key("pk_live_x"),
                subject: "key_1".into(),
                scope: Some("submit_job".into()),
            })
        );
        let TokenClaims::Verified(token) = with_scope(b"*") else {
            panic!("verified");
        };
        assert_eq!(token.scope, None);
        // No private scope claim (a mesh rewrote it, or an older token): unusable, never all.
        assert_eq!(claims(&base), TokenClaims::Unusable);
        // A number claim comes as 8 bytes of a double: not a string.
        assert_eq!(
            with_scope(&[0, 0, 0, 0, 0, 0, 0xf0, 0xbf]),
            TokenClaims::Unusable
        );
    }

    #[test]
    fn no_subject_is_no_token_and_missing_claims_are_unusable() {
        assert_eq!(claims(&[]), TokenClaims::Absent);
        let hash = hash_key("k");
        let cases: [&[(&str, &[u8])]; 4] = [
            &[
                ("sub", b"key_1"),
                ("iss", ISSUER.as_bytes()),
                (KEY_SCOPE_CLAIM, b"*"),
            ],
            &[
                ("sub", b""),
                ("iss", ISSUER.as_bytes()),
                (KEY_HASH_CLAIM, hash.as_bytes()),
                (KEY_SCOPE_CLAIM, b"*"),
            ],
            &[
                ("sub", b"key_1"),
                ("iss", ISSUER.as_bytes()),
                (KEY_HASH_CLAIM, b"ABCD"),
                (KEY_SCOPE_CLAIM, b"*"),
            ],
            // Another issuer's token in the same metadata (several providers, one payload key).
            &[
                ("sub", b"key_1"),
                ("iss", b"https://idp.example"),
                (KEY_HASH_CLAIM, hash.as_bytes()),
                (KEY_SCOPE_CLAIM, b"*"),
            ],
        ];
        for pairs in cases {
            assert_eq!(claims(pairs), TokenClaims::Unusable, "{pairs:?}");
        }
    }

    #[test]
    fn only_compact_jws_shapes_look_like_tokens() {
        assert!(looks_like_jwt("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJrIn0.c2ln"));
        for not in [
            "pk_live_abc",
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJrIn0",
            "eyJ.a.b.c",
            "abc.def.ghi",
            "eyJ..sig",
            "eyJa.b+c.d",
        ] {
            assert!(!looks_like_jwt(not), "{not}");
        }
    }

    #[test]
    fn the_upstream_sees_the_narrowed_scopes_never_full_access() {
        assert_eq!(narrowed_scopes("a,b,c", "c a"), "a,c");
        assert_eq!(
            narrowed_scopes("", "submit_job list_models"),
            "submit_job,list_models"
        );
        assert_eq!(narrowed_scopes("a,b", "z"), NO_SCOPES);
        assert_eq!(narrowed_scopes("", ""), NO_SCOPES);
    }

    #[test]
    fn claim_paths_name_the_metadata() {
        let source = TokenSource {
            metadata_namespace: "envoy.filters.http.jwt_authn".into(),
            payload_key: "keygate".into(),
            issuer: ISSUER.into(),
        };
        assert_eq!(
            source.claim_path("sub"),
            [
                "metadata",
                "filter_metadata",
                "envoy.filters.http.jwt_authn",
                "keygate",
                "sub"
            ]
        );
    }
}
