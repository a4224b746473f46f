//! Management tokens: their roles, a token as stored (only the SHA-256 of its secret), the
//! settings one is created with, and how a new one is minted. The secret exists only in the
//! answer that created it.

use crate::domain::audit::Actor;
use crate::domain::secrets;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Every management token starts with this.
pub const TOKEN_PREFIX: &str = "kgt_";
/// Random base62 characters after the prefix: about 238 bits.
pub const TOKEN_RANDOM_LEN: usize = 40;
const TOKEN_ID_RANDOM_LEN: usize = 16;
/// `last_used_at` is written at most this often per token, not on every request.
pub const LAST_USED_PRECISION_SECONDS: i64 = 60;

/// What a token may do; each role can do everything the ones before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A token row; never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub id: String,
    pub hash: String,
    pub last4: String,
    pub name: String,
    pub role: Role,
    pub team: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub rotated_from: Option<String>,
}

impl StoredToken {
    /// Whether the token authenticates at `now`.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        let expired = self.expires_at.is_some_and(|expiry| expiry <= now);
        self.revoked_at.is_none() && !expired
    }

    /// Whether its last use should be written down at `now`: it never was, or the note is
    /// [`LAST_USED_PRECISION_SECONDS`] old.
    pub fn last_use_is_stale(&self, now: DateTime<Utc>) -> bool {
        self.last_used_at
            .is_none_or(|used| (now - used).num_seconds() >= LAST_USED_PRECISION_SECONDS)
    }

    /// The actor changes made with this token are recorded under.
    pub fn actor(&self) -> Actor {
        Actor {
            token_id: self.id.clone(),
            token_name: self.name.clone(),
            team: self.team.clone(),
        }
    }
}

/// The settings a token is created with, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    pub name: String,
    pub role: Role,
    pub team: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A new token and its secret.
pub struct MintedToken {
    pub token: StoredToken,
    pub secret: String,
}

/// The stored form of a secret: SHA-256, lowercase hex.
pub fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

pub fn mint(
    settings: &TokenSettings,
    now: DateTime<Utc>,
    rotated_from: Option<String>,
) -> Result<MintedToken, getrandom::Error> {
    let secret = format!(
        "{TOKEN_PREFIX}{}",
        secrets::random_base62(TOKEN_RANDOM_LEN)?
    );
    let token = StoredToken {
        id: format!("tok_{}", secrets::random_base62(TOKEN_ID_RANDOM_LEN)?),
        hash: digest(&secret),
        last4: secrets::last4(&secret),
        name: settings.name.clone(),
        role: settings.role,
        team: settings.team.clone(),
        created_at: now,
        expires_at: settings.expires_at,
        revoked_at: None,
        last_used_at: None,
        rotated_from,
    };
    Ok(MintedToken { token, secret })
}
