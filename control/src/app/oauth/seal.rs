//! Sealing the signing keys' private halves: AES-256-GCM under a key from the environment
//! (`KEYGATE_OAUTH_SEALING_KEY`), the key id as associated data so a sealed key cannot be
//! swapped onto another row. The database alone never holds a usable private key.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

/// The format tag of what `seal` writes, for a later change of scheme.
const VERSION: &str = "v1";

pub struct SealingKey(LessSafeKey);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    /// 32 bytes written in base64 (standard or URL-safe, padded or not), as
    /// `openssl rand -base64 32` prints them.
    pub fn from_base64(text: &str) -> Result<SealingKey, String> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| "not base64 (make one with: openssl rand -base64 32)".to_string())?;
        if bytes.len() != 32 {
            return Err(format!(
                "{} bytes; AES-256 needs 32 (make one with: openssl rand -base64 32)",
                bytes.len()
            ));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "unusable key".to_string())?;
        Ok(SealingKey(LessSafeKey::new(key)))
    }

    /// `v1.<nonce>.<ciphertext and tag>`, base64url; a fresh random nonce each time.
    pub fn seal(&self, plaintext: &[u8], associated: &str) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|error| format!("random nonce: {error}"))?;
        let mut sealed = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| "sealing failed".to_string())?;
        Ok(format!(
            "{VERSION}.{}.{}",
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// The plaintext `seal` sealed with this key and `associated`; an error for anything else
    /// (another sealing key, another row, a changed byte).
    pub fn open(&self, sealed: &str, associated: &str) -> Result<Vec<u8>, String> {
        let wrong =
            || "cannot open: sealed with another KEYGATE_OAUTH_SEALING_KEY, or damaged".to_string();
        let mut parts = sealed.split('.');
        let (Some(VERSION), Some(nonce), Some(body), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(wrong());
        };
        let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .and_then(|nonce| nonce.try_into().ok())
            .ok_or_else(wrong)?;
        let mut body = URL_SAFE_NO_PAD.decode(body).map_err(|_| wrong())?;
        let plaintext = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated.as_bytes()),
                &mut body,
            )
            .map_err(|_| wrong())?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn what_is_sealed_opens_only_with_its_key_and_row() {
        let key = SealingKey::from_base64(KEY).unwrap();
        let sealed = key.seal(b"private", "kid-1").unwrap();
        assert!(!sealed.contains("private"));
        assert_ne!(
            sealed,
            key.seal(b"private", "kid-1").unwrap(),
            "fresh nonce"
        );
        assert_eq!(key.open(&sealed, "kid-1").unwrap(), b"private");
        assert!(key.open(&sealed, "kid-2").is_err());
        let other = SealingKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        assert!(other.open(&sealed, "kid-1").is_err());
        let mut damaged = sealed.clone();
        damaged.pop();
        assert!(key.open(&damaged, "kid-1").is_err());
        assert!(key.open("v2.a.b", "kid-1").is_err());
    }

    #[test]
    fn sealing_keys_are_32_bytes_of_base64() {
        assert!(SealingKey::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        assert!(SealingKey::from_base64("not base64!").is_err());
        assert!(SealingKey::from_base64(&URL_SAFE_NO_PAD.encode([1u8; 32])).is_ok());
    }
}
