//! GitHub's secret scanning partner protocol, as pure functions: the public keys document the
//! service is configured with, the ECDSA P-256 / SHA-256 signature over a report's raw body,
//! the report (a JSON array of found tokens, read tolerantly) and the feedback answer
//! (docs/security.md, "Leaked keys").

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One public key of the document, by the identifier reports name it with.
#[derive(Debug, Clone)]
pub struct ScanningKey {
    pub identifier: String,
    pub key: VerifyingKey,
    pub is_current: bool,
}

/// The keys reports may be signed with (GitHub keeps a retired key listed for a while).
#[derive(Debug, Clone, Default)]
pub struct ScanningKeys {
    keys: Vec<ScanningKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysDocument {
    public_keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    key_identifier: String,
    key: String,
    #[serde(default)]
    is_current: bool,
}

/// Reads the public keys document (`{"public_keys": [{"key_identifier", "key" (PEM),
/// "is_current"}]}`, GitHub's shape). Configuration is read strictly: an unknown field, a key
/// that is not a P-256 public key, an empty or repeated identifier reject the whole file.
pub fn parse_keys(document: &[u8]) -> Result<ScanningKeys, String> {
    let document: KeysDocument =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(document))
            .map_err(|error| format!("not a public keys document: {error}"))?;
    let mut keys: Vec<ScanningKey> = Vec::with_capacity(document.public_keys.len());
    for (index, entry) in document.public_keys.into_iter().enumerate() {
        if entry.key_identifier.is_empty() {
            return Err(format!("public_keys[{index}].key_identifier: empty"));
        }
        if keys
            .iter()
            .any(|known| known.identifier == entry.key_identifier)
        {
            return Err(format!(
                "public_keys[{index}].key_identifier: {:?} listed twice",
                entry.key_identifier
            ));
        }
        let key = VerifyingKey::from_public_key_pem(&entry.key).map_err(|error| {
            format!("public_keys[{index}].key: not a P-256 public key in PEM ({error})")
        })?;
        keys.push(ScanningKey {
            identifier: entry.key_identifier,
            key,
            is_current: entry.is_current,
        });
    }
    Ok(ScanningKeys { keys })
}

/// Why a report's signature was not accepted; every one is a 401 that changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// A header is missing or empty.
    Missing,
    /// No configured key has this identifier.
    UnknownKey,
    /// The signature is not base64 of a DER-encoded ECDSA signature.
    Malformed,
    /// The signature does not verify over the body.
    Invalid,
}

impl SignatureError {
    pub fn message(self) -> &'static str {
        match self {
            SignatureError::Missing => {
                "Github-Public-Key-Identifier and Github-Public-Key-Signature are required"
            }
            SignatureError::UnknownKey => "the signing key is not one this service trusts",
            SignatureError::Malformed => "the signature is not base64 of a DER ECDSA signature",
            SignatureError::Invalid => "the signature does not match the body",
        }
    }
}

impl ScanningKeys {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `2 public keys (1 current)`, for the log.
    pub fn summary(&self) -> String {
        let current = self.keys.iter().filter(|key| key.is_current).count();
        format!("{} public keys ({current} current)", self.keys.len())
    }

    /// What can be refused before the body is read: a missing header, an unknown key.
    pub fn precheck(
        &self,
        identifier: Option<&str>,
        signature: Option<&str>,
    ) -> Result<&ScanningKey, SignatureError> {
        let identifier = identifier.filter(|text| !text.is_empty());
        let signature = signature.filter(|text| !text.is_empty());
        let (Some(identifier), Some(_)) = (identifier, signature) else {
            return Err(SignatureError::Missing);
        };
        self.keys
            .iter()
            .find(|key| key.identifier == identifier)
            .ok_or(SignatureError::UnknownKey)
    }
}

impl ScanningKey {
    /// Verifies `signature` (base64 of DER) over the raw `body` with this key.
    pub fn verify(&self, signature: &str, body: &[u8]) -> Result<(), SignatureError> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| SignatureError::Malformed)?;
        let signature = Signature::from_der(&der).map_err(|_| SignatureError::Malformed)?;
        self.key
            .verify(body, &signature)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// One token a report names, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedToken {
    pub token: String,
    pub token_type: Option<String>,
    pub url: Option<String>,
    pub source: Option<String>,
}

/// A report read: the tokens it names and how many entries had no token to read (skipped,
/// as a wire message is read tolerantly: one bad entry does not lose the others).
#[derive(Debug, Default)]
pub struct Report {
    pub tokens: Vec<ReportedToken>,
    pub skipped: usize,
}

fn text(entry: &Value, field: &str) -> Option<String> {
    entry.get(field).and_then(Value::as_str).map(str::to_string)
}

/// Reads a report body: a JSON array of `{"token", "type", "url", "source"}`. Not an array is
/// an error; an entry without a string `token` is skipped; unknown fields are ignored.
pub fn parse_report(body: &[u8]) -> Result<Report, String> {
    let entries: Vec<Value> = serde_json::from_slice(body)
        .map_err(|error| format!("the body must be a JSON array of found tokens: {error}"))?;
    let mut report = Report::default();
    for entry in &entries {
        match entry.get("token").and_then(Value::as_str) {
            Some(token) if !token.is_empty() => report.tokens.push(ReportedToken {
                token: token.to_string(),
                token_type: text(entry, "type"),
                url: text(entry, "url"),
                source: text(entry, "source"),
            }),
            _ => report.skipped += 1,
        }
    }
    Ok(report)
}

/// GitHub's label for a token: one Keygate issued and still knows, or anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    TruePositive,
    FalsePositive,
}

/// One entry of the answer, in GitHub's feedback shape: the token only as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenFeedback {
    pub token_hash: String,
    pub token_type: String,
    pub label: Label,
}

#[cfg(test)]
#[path = "secret_scanning/tests.rs"]
mod tests;
