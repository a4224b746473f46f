//! Management tokens' operations: create, list, revoke, rotate, and authenticating a call. Each
//! change writes its audit entry in its own transaction.

use crate::app::error::LifecycleError;
use crate::domain::audit::{Action, Actor};
use crate::domain::clock;
use crate::domain::tokens::{digest, mint, MintedToken, StoredToken, TokenSettings};
use crate::store::audit;
use crate::store::db::Store;
use crate::store::sql::{Error, Tx};
use crate::store::{teams, tokens};
use chrono::{DateTime, Utc};
use serde_json::json;

/// The unrevoked token `id`, if `actor` may see it.
fn find_visible(tx: &Tx, actor: &Actor, id: &str) -> Result<StoredToken, LifecycleError> {
    match tokens::find_by_id(tx, id)? {
        Some(token) if token.revoked_at.is_none() && actor.sees(token.team.as_deref()) => Ok(token),
        _ => Err(LifecycleError::NotFound),
    }
}

fn token_fields(token: &StoredToken) -> serde_json::Value {
    json!({
        "name": token.name,
        "role": token.role,
        "team": token.team,
        "expires_at": token.expires_at.map(clock::format),
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
        tokens::insert(tx, &minted.token)?;
        teams::ensure(tx, minted.token.team.as_deref().unwrap_or(""), now)?;
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
    Ok(store.read(|tx| tokens::list_unrevoked(tx, actor.team.as_deref()))?)
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
        tokens::set_revoked_at(tx, &token.id, now)?;
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
            expires_at: old.expires_at,
        };
        let minted = mint(&settings, now, Some(old.id.clone()))?;
        let old_expiry = clock::end_of_grace(old.expires_at, now, grace_seconds);
        tokens::set_expires_at(tx, &old.id, old_expiry)?;
        tokens::insert(tx, &minted.token)?;
        audit::record(
            tx,
            actor,
            Action::TokenRotate,
            &old.id,
            old.team.as_deref(),
            &json!({
                "grace_seconds": grace_seconds,
                "expires_at": clock::format(old_expiry),
                "successor": minted.token.id,
            }),
            now,
        )?;
        Ok(minted)
    })
}

/// The usable token whose secret is `secret`; notes its use if the last note is older than
/// [`LAST_USED_PRECISION_SECONDS`](crate::domain::tokens::LAST_USED_PRECISION_SECONDS).
pub fn authenticate(
    store: &Store,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Option<StoredToken>, Error> {
    let hash = digest(secret);
    let Some(token) = store.read(|tx| tokens::find_by_hash(tx, &hash))? else {
        return Ok(None);
    };
    if !token.is_usable(now) {
        return Ok(None);
    }
    if token.last_use_is_stale(now) {
        store.write(|tx| tokens::set_last_used_at(tx, &token.id, now))?;
        return Ok(Some(StoredToken {
            last_used_at: Some(now),
            ..token
        }));
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tokens::{Role, TOKEN_PREFIX, TOKEN_RANDOM_LEN};
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
        assert_eq!(used.last_used_at, Some(now));
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
            .read(|tx| audit::list(tx, &crate::domain::audit::AuditFilter::default(), 10))
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
        assert_eq!(seen.last_used_at, Some(now));
        let later = now + chrono::Duration::seconds(61);
        let seen = authenticate(&store, &minted.secret, later)
            .unwrap()
            .unwrap();
        assert_eq!(seen.last_used_at, Some(later));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
