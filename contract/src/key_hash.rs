//! The key hash: the one definition of how a secret becomes what snapshots carry and the store
//! is keyed by. The control service stores what `hash_key` gives; the filter looks keys up by
//! `digest_key`.

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// SHA-256 of the key as presented. A key is a high-entropy random string, so a fast unsalted
/// hash is enough: there is nothing to brute-force (see docs/security.md). The request path
/// works on these bytes directly; hex is for snapshots, logs and tests.
pub fn digest_key(key: &str) -> Digest {
    Sha256::digest(key.as_bytes()).into()
}

/// Lowercase hex SHA-256 of the key as presented, as snapshots carry it.
pub fn hash_key(key: &str) -> String {
    hex_digest(&digest_key(key))
}

/// The digest as 64 lowercase hex digits, as snapshots in JSON carry it.
pub fn hex_digest(digest: &Digest) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // A table rather than `format!`: core::fmt cost more instructions than the hash itself
    // (callgrind, docs/benchmarks.md).
    let mut hex = String::with_capacity(64);
    for &byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 15)]));
    }
    hex
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// The digest written as 64 lowercase hex digits; `None` for anything else.
pub fn parse_hex_digest(hex: &str) -> Option<Digest> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = hex_value(hex[2 * i])? << 4 | hex_value(hex[2 * i + 1])?;
    }
    Some(digest)
}

/// `pk_live_…wxyz`: what may appear in logs instead of a key.
pub fn redact(key: &str) -> String {
    let prefix_end = key.rfind('_').map_or(0, |p| p + 1).min(12);
    let last4_start = key.len().saturating_sub(4).max(prefix_end);
    let prefix = key.get(..prefix_end).unwrap_or("");
    let last4 = key.get(last4_start..).unwrap_or("");
    format!("{prefix}…{last4}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answers() {
        assert_eq!(
            hash_key(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_digests_round_trip() {
        let hex = hash_key("abc");
        assert_eq!(parse_hex_digest(&hex), Some(digest_key("abc")));
        assert_eq!(parse_hex_digest(&hex.to_uppercase()), None);
        assert_eq!(parse_hex_digest(&hex[1..]), None);
        assert_eq!(parse_hex_digest("zz"), None);
    }

    #[test]
    fn redaction_keeps_prefix_and_last_four_only() {
        assert_eq!(redact("pk_live_AbCdEfGhIjKlMnOp1234"), "pk_live_…1234");
        assert_eq!(redact("abcdefgh"), "…efgh");
        assert_eq!(redact("ab"), "…ab");
        assert_eq!(redact("pk_test_x"), "pk_test_…x");
    }
}
