//! ES256 signing keys: made with ring (P-256, PKCS#8), published as JWKs (RFC 7517/7518), and
//! used through jsonwebtoken to sign access tokens as RFC 9068 JWTs.

use crate::domain::oauth::AccessClaims;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keygate_contract::access_token::TOKEN_TYPE;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// A new key pair: the private key as PKCS#8 DER and the public key as a JWK.
pub struct NewKeyPair {
    pub pkcs8: Vec<u8>,
    pub public_jwk: Value,
}

/// A random, URL-safe identifier: a key's `kid`, a token's `jti`.
pub fn random_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| format!("random id: {error}"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A fresh P-256 key pair named `kid`.
pub fn generate(kid: &str) -> Result<NewKeyPair, String> {
    let random = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random)
        .map_err(|_| "generating a P-256 key failed".to_string())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random)
        .map_err(|_| "reading the new P-256 key failed".to_string())?;
    // Uncompressed SEC1 point: 0x04, then x and y of 32 bytes each.
    let point = pair.public_key().as_ref();
    let (Some(x), Some(y)) = (point.get(1..33), point.get(33..65)) else {
        return Err("unexpected P-256 public key length".into());
    };
    Ok(NewKeyPair {
        pkcs8: pkcs8.as_ref().to_vec(),
        public_jwk: json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "kid": kid,
            "alg": "ES256",
            "use": "sig",
        }),
    })
}

/// The signed token: header `{"typ": "at+jwt", "alg": "ES256", "kid": kid}` (RFC 9068 §2.1).
pub fn sign(claims: &AccessClaims, kid: &str, pkcs8: &[u8]) -> Result<String, String> {
    let header = Header {
        typ: Some(TOKEN_TYPE.to_string()),
        kid: Some(kid.to_string()),
        ..Header::new(Algorithm::ES256)
    };
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(pkcs8))
        .map_err(|error| format!("signing a token: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn a_signed_token_verifies_with_the_published_jwk_and_no_other() {
        let pair = generate("kid-1").unwrap();
        let claims = AccessClaims {
            iss: "https://api.example".into(),
            sub: "key_1".into(),
            aud: "https://api.example".into(),
            client_id: "key_1".into(),
            scope: Some("submit_job".into()),
            jti: random_id().unwrap(),
            iat: 1_700_000_000,
            exp: 4_000_000_000,
            keygate_key_hash: "ab".repeat(32),
            keygate_scope: "submit_job".into(),
        };
        let token = sign(&claims, "kid-1", &pair.pkcs8).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some("kid-1"));
        let jwk = &pair.public_jwk;
        let key =
            DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
                .unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&["https://api.example"]);
        let decoded = jsonwebtoken::decode::<AccessClaims>(&token, &key, &validation).unwrap();
        assert_eq!(decoded.claims, claims);
        let other = generate("kid-2").unwrap().public_jwk;
        let other = DecodingKey::from_ec_components(
            other["x"].as_str().unwrap(),
            other["y"].as_str().unwrap(),
        )
        .unwrap();
        assert!(jsonwebtoken::decode::<AccessClaims>(&token, &other, &validation).is_err());
    }
}
