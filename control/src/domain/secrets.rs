//! Secrets and identifiers from the OS CSPRNG. The one-way hash that is all we store is the
//! filter's own, `keygate_contract::key_hash::hash_key`.

use crate::domain::plans::Environment;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use keygate_contract::key_format::{self, BASE62};

const ID_RANDOM_LEN: usize = 16;

/// `len` characters drawn uniformly from the base62 alphabet.
pub fn random_base62(len: usize) -> Result<String, getrandom::Error> {
    // Bytes >= 248 are rejected so that `byte % 62` is uniform (248 = 4 * 62).
    const ACCEPT_BELOW: u8 = 248;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf)?;
        for byte in buf.iter().filter(|byte| **byte < ACCEPT_BELOW) {
            if out.len() == len {
                break;
            }
            out.push(char::from(BASE62[usize::from(*byte % 62)]));
        }
    }
    Ok(out)
}

/// A new secret: `pk_live_` or `pk_test_`, 40 random base62 characters and the 6-character
/// checksum of the contract's key format.
pub fn generate_secret(environment: Environment) -> Result<String, getrandom::Error> {
    let body = format!(
        "{}{}",
        environment.secret_prefix(),
        random_base62(key_format::RANDOM_LEN)?
    );
    Ok(key_format::with_checksum(&body))
}

/// A new public key id such as `key_` followed by 16 base62 characters.
pub fn generate_key_id() -> Result<String, getrandom::Error> {
    Ok(format!("key_{}", random_base62(ID_RANDOM_LEN)?))
}

/// The last four characters of a secret, shown so people can tell their keys apart.
pub fn last4(secret: &str) -> String {
    let skip = secret.chars().count().saturating_sub(4);
    secret.chars().skip(skip).collect()
}

/// A token kept only as its SHA-256, compared in constant time (and independent of length).
pub struct TokenDigest([u8; 32]);

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not even the digest: it would let a log reader test guesses offline.
        f.write_str("TokenDigest(…)")
    }
}

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&presented).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_only_the_same_token() {
        let digest = TokenDigest::of("secret-token");
        assert!(digest.matches("secret-token"));
        assert!(!digest.matches("secret-token2"));
        assert!(!digest.matches(""));
    }

    #[test]
    fn secrets_have_prefix_length_and_alphabet() {
        for environment in [Environment::Live, Environment::Test] {
            let secret = generate_secret(environment).unwrap();
            let random = secret.strip_prefix(environment.secret_prefix()).unwrap();
            assert_eq!(
                random.len(),
                key_format::RANDOM_LEN + key_format::CHECKSUM_LEN
            );
            assert!(
                random.bytes().all(|byte| BASE62.contains(&byte)),
                "{secret}"
            );
            assert_eq!(
                key_format::classify(&secret),
                key_format::KeyShape::Checksummed {
                    environment: environment.key_environment(),
                    checksum_ok: true
                }
            );
        }
    }

    #[test]
    fn secrets_and_ids_differ_each_time() {
        assert_ne!(
            generate_secret(Environment::Live).unwrap(),
            generate_secret(Environment::Live).unwrap()
        );
        let id = generate_key_id().unwrap();
        assert!(id.starts_with("key_") && id.len() == 20, "{id}");
    }

    #[test]
    fn alphabet_is_covered_roughly_uniformly() {
        let sample = random_base62(62 * 200).unwrap();
        for symbol in BASE62 {
            let count = sample.bytes().filter(|byte| byte == symbol).count();
            assert!(
                (100..=320).contains(&count),
                "{} appeared {count} times",
                char::from(*symbol)
            );
        }
    }

    #[test]
    fn last_four() {
        assert_eq!(last4("pk_live_abcdWXYZ"), "WXYZ");
        assert_eq!(last4("ab"), "ab");
    }
}
