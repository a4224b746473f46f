//! Management tokens: rows, and the lifecycle (create, revoke, rotate) with its audit entries.
//! Only the SHA-256 of a secret is stored; the secret exists in the answer that created it.

use crate::app::keys::LifecycleError;
use crate::domain::clock;
use crate::domain::secrets;
use crate::store::audit::{self, Action, Actor};
use crate::store::db::Store;
use crate::store::sql::{named_params, params, Error, Result, Row, Tx};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Every management token starts with this.
pub const TOKEN_PREFIX: &str = "kgt_";
/// Random base62 characters after the prefix: about 238 bits.
const TOKEN_RANDOM_LEN: usize = 40;
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
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    pub rotated_from: Option<String>,
}

impl StoredToken {
    /// Whether the token authenticates at `now`.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        let expired = self
            .expires_at
            .as_deref()
            .and_then(clock::parse)
            .is_some_and(|expiry| expiry <= now);
        self.revoked_at.is_none() && !expired
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
    pub expires_at: Option<String>,
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

fn mint(
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
        created_at: clock::format(now),
        expires_at: settings.expires_at.clone(),
        revoked_at: None,
        last_used_at: None,
        rotated_from,
    };
    Ok(MintedToken { token, secret })
}

const COLUMNS: &str = "id, hash, last4, name, role, team, created_at, expires_at, revoked_at, \
                       last_used_at, rotated_from";

fn from_row(row: &Row) -> Result<StoredToken> {
    let role: String = row.get(4)?;
    Ok(StoredToken {
        id: row.get(0)?,
        hash: row.get(1)?,
        last4: row.get(2)?,
        name: row.get(3)?,
        role: Role::parse(&role).ok_or_else(|| Error::Conversion {
            column: 4,
            message: format!("unknown role {role:?}"),
        })?,
        team: row.get(5)?,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
        revoked_at: row.get(8)?,
        last_used_at: row.get(9)?,
        rotated_from: row.get(10)?,
    })
}

fn insert(tx: &Tx, token: &StoredToken) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO tokens ({COLUMNS}) VALUES (:id, :hash, :last4, :name, :role, :team, \
         :created_at, :expires_at, :revoked_at, :last_used_at, :rotated_from)"
        ),
        named_params! {
            ":id": token.id,
            ":hash": token.hash,
            ":last4": token.last4,
            ":name": token.name,
            ":role": token.role.as_str(),
            ":team": token.team,
            ":created_at": token.created_at,
            ":expires_at": token.expires_at,
            ":revoked_at": token.revoked_at,
            ":last_used_at": token.last_used_at,
            ":rotated_from": token.rotated_from,
        },
    )?;
    Ok(())
}

fn find_by(tx: &Tx, column: &str, value: &str) -> Result<Option<StoredToken>> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM tokens WHERE {column} = ?1"),
        [value],
        from_row,
    )
}

/// The unrevoked token `id`, if `actor` may see it.
fn find_visible(tx: &Tx, actor: &Actor, id: &str) -> Result<StoredToken, LifecycleError> {
    match find_by(tx, "id", id)? {
        Some(token) if token.revoked_at.is_none() && actor.sees(token.team.as_deref()) => Ok(token),
        _ => Err(LifecycleError::NotFound),
    }
}

fn token_fields(token: &StoredToken) -> serde_json::Value {
    json!({
        "name": token.name,
        "role": token.role,
        "team": token.team,
        "expires_at": token.expires_at,
    })
}

/// Stores a new token made by `actor`, with its audit entry.
pub fn create(
    store: &Store,
    actor: &Actor,
    settings: &TokenSettings,
    now: DateTime<Utc>,
) -> Result<MintedToken, LifecycleError> {
    let minted = mint(settings, now, None)?;
    store.write(|tx| {
        insert(tx, &minted.token)?;
        audit::record(
            tx,
            actor,
            Action::TokenCreate,
            &minted.token.id,
            minted.token.team.as_deref(),
            &token_fields(&minted.token),
            now,
        )?;
        Ok::<_, LifecycleError>(())
    })?;
    Ok(minted)
}

/// Unrevoked tokens `actor` may see, in creation order.
pub fn list(store: &Store, actor: &Actor) -> Result<Vec<StoredToken>, LifecycleError> {
    store.read(|tx| {
        let tokens = tx.query_map(
            &format!(
                "SELECT {COLUMNS} FROM tokens
                 WHERE revoked_at IS NULL AND (CAST(:team AS TEXT) IS NULL OR team = :team) ORDER BY seq"
            ),
            named_params! { ":team": actor.team },
            from_row,
        )?;
        Ok(tokens)
    })
}

/// Revokes the token at once.
pub fn revoke(
    store: &Store,
    actor: &Actor,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), LifecycleError> {
    store.write(|tx| {
        let token = find_visible(tx, actor, id)?;
        tx.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1",
            params![token.id, clock::format(now)],
        )?;
        audit::record(
            tx,
            actor,
            Action::TokenRevoke,
            &token.id,
            token.team.as_deref(),
            &json!({}),
            now,
        )?;
        Ok(())
    })
}

/// Mints a successor with the same settings; the old token works `grace_seconds` more (or
/// less, if it was due to expire sooner anyway).
pub fn rotate(
    store: &Store,
    actor: &Actor,
    id: &str,
    grace_seconds: u64,
    now: DateTime<Utc>,
) -> Result<MintedToken, LifecycleError> {
    store.write(|tx| {
        let old = find_visible(tx, actor, id)?;
        let settings = TokenSettings {
            name: old.name.clone(),
            role: old.role,
            team: old.team.clone(),
            expires_at: old.expires_at.clone(),
        };
        let minted = mint(&settings, now, Some(old.id.clone()))?;
        let old_expiry = clock::end_of_grace(old.expires_at.as_deref(), now, grace_seconds);
        tx.execute(
            "UPDATE tokens SET expires_at = ?2 WHERE id = ?1",
            params![old.id, old_expiry],
        )?;
        insert(tx, &minted.token)?;
        audit::record(
            tx,
            actor,
            Action::TokenRotate,
            &old.id,
            old.team.as_deref(),
            &json!({
                "grace_seconds": grace_seconds,
                "expires_at": old_expiry,
                "successor": minted.token.id,
            }),
            now,
        )?;
        Ok(minted)
    })
}

/// The usable token whose secret is `secret`; notes its use if the last note is older than
/// [`LAST_USED_PRECISION_SECONDS`].
pub fn authenticate(
    store: &Store,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Option<StoredToken>, Error> {
    let hash = digest(secret);
    let Some(token) = store.read(|tx| find_by(tx, "hash", &hash))? else {
        return Ok(None);
    };
    if !token.is_usable(now) {
        return Ok(None);
    }
    let stale = token
        .last_used_at
        .as_deref()
        .and_then(clock::parse)
        .is_none_or(|used| (now - used).num_seconds() >= LAST_USED_PRECISION_SECONDS);
    if stale {
        let used = clock::format(now);
        store.write(|tx| {
            tx.execute(
                "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
                params![token.id, used],
            )
        })?;
        return Ok(Some(StoredToken {
            last_used_at: Some(used),
            ..token
        }));
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::temp_store;

    fn settings(team: Option<&str>) -> TokenSettings {
        TokenSettings {
            name: "ci".into(),
            role: Role::Editor,
            team: team.map(String::from),
            expires_at: None,
        }
    }

    #[test]
    fn secrets_are_stored_only_as_their_digest() {
        let (store, dir) = temp_store("tokens", "digest");
        let now = clock::now();
        let minted = create(&store, &Actor::bootstrap(), &settings(None), now).unwrap();
        assert!(minted.secret.starts_with(TOKEN_PREFIX));
        assert_eq!(minted.secret.len(), TOKEN_PREFIX.len() + TOKEN_RANDOM_LEN);
        let stored: Vec<String> = store
            .read(|tx| {
                tx.query_map("SELECT * FROM tokens", (), |row| {
                    (0..12)
                        .map(|i| row.get::<crate::store::sql::Value>(i))
                        .collect::<Result<Vec<_>, _>>()
                        .map(|values| format!("{values:?}"))
                })
            })
            .unwrap();
        assert!(!stored[0].contains(&minted.secret));
        assert!(stored[0].contains(&digest(&minted.secret)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn revoked_expired_and_rotated_tokens_stop_working() {
        let (store, dir) = temp_store("tokens", "lifecycle");
        let now = clock::now();
        let actor = Actor::bootstrap();
        let first = create(&store, &actor, &settings(Some("red")), now).unwrap();
        let used = authenticate(&store, &first.secret, now).unwrap().unwrap();
        assert_eq!(used.last_used_at, Some(clock::format(now)));
        let rotated = rotate(&store, &actor, &first.token.id, 60, now).unwrap();
        let later = now + chrono::Duration::seconds(59);
        assert!(authenticate(&store, &first.secret, later)
            .unwrap()
            .is_some());
        let after_grace = now + chrono::Duration::seconds(60);
        assert!(authenticate(&store, &first.secret, after_grace)
            .unwrap()
            .is_none());
        assert!(authenticate(&store, &rotated.secret, after_grace)
            .unwrap()
            .is_some());
        let blue = Actor {
            team: Some("blue".into()),
            ..Actor::bootstrap()
        };
        assert!(matches!(
            revoke(&store, &blue, &rotated.token.id, now),
            Err(LifecycleError::NotFound)
        ));
        revoke(&store, &actor, &rotated.token.id, now).unwrap();
        assert!(authenticate(&store, &rotated.secret, now)
            .unwrap()
            .is_none());
        assert!(authenticate(&store, "kgt_unknown", now).unwrap().is_none());
        let actions: Vec<String> = store
            .read(|tx| audit::list(tx, &audit::AuditFilter::default(), 10))
            .unwrap()
            .0
            .into_iter()
            .map(|entry| entry.action)
            .collect();
        assert_eq!(
            actions,
            ["token.create", "token.rotate", "token.revoke"].map(String::from)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn last_use_is_written_at_most_once_a_minute() {
        let (store, dir) = temp_store("tokens", "last-used");
        let now = clock::now();
        let minted = create(&store, &Actor::bootstrap(), &settings(None), now).unwrap();
        authenticate(&store, &minted.secret, now).unwrap();
        let soon = now + chrono::Duration::seconds(30);
        let seen = authenticate(&store, &minted.secret, soon).unwrap().unwrap();
        assert_eq!(seen.last_used_at, Some(clock::format(now)));
        let later = now + chrono::Duration::seconds(61);
        let seen = authenticate(&store, &minted.secret, later)
            .unwrap()
            .unwrap();
        assert_eq!(seen.last_used_at, Some(clock::format(later)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
