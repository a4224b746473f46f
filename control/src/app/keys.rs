//! The key lifecycle: create, change, rotate, delete. Each is one transaction that moves the
//! version on and stamps it on every row it touches, so the snapshot feed can serve deltas,
//! and records who made the change in the audit log. An actor bound to a team finds only that
//! team's keys: any other answers `NotFound`.

use crate::app::alerts;
use crate::app::error::LifecycleError;
use crate::app::quota::{current_mark, remark};
use crate::domain::alerts::{expiry_alert, key_alert, AlertKind, KeyRef};
use crate::domain::audit::{key_changes, key_fields, Action, Actor};
use crate::domain::clock;
use crate::domain::cursor::Position;
use crate::domain::keys::{mint, KeyChanges, KeyFilter, KeySettings, MintedKey, StoredKey};
use crate::domain::plans::{Plan, PlanLimits};
use crate::store::audit;
use crate::store::db::{bump_version, Store};
use crate::store::keys::{self, RowPage};
use crate::store::sql::{Error, Result, Tx};
use crate::store::{plans, teams};
use chrono::{DateTime, Utc};
use keygate_contract::FieldError;
use serde_json::json;

fn served_record_is_valid(key: &StoredKey, now: DateTime<Utc>) -> Result<(), LifecycleError> {
    crate::domain::served::filter_accepts(key, now).map_err(LifecycleError::Invalid)
}

pub fn create(
    store: &Store,
    actor: &Actor,
    settings: &KeySettings,
    now: DateTime<Utc>,
) -> Result<MintedKey, LifecycleError> {
    let mut minted = mint(settings, now, None)?;
    store.write(|tx| {
        minted.key.plan_limits = plan_limits(tx, &minted.key.plan)?;
        // A new key of a team over its shared quota is refused like the team's other keys.
        minted.key.quota_exceeded_until = current_mark(tx, &minted.key, now)?;
        served_record_is_valid(&minted.key, now)?;
        minted.key.updated_version = bump_version(tx)?;
        minted.key.seq = keys::insert(tx, &minted.key)?;
        teams::ensure(tx, &minted.key.team, now)?;
        let fields = serde_json::Value::Object(key_fields(&minted.key));
        record(tx, actor, Action::KeyCreate, &minted.key, &fields, now)?;
        let extra = json!({"plan": minted.key.plan, "environment": minted.key.environment});
        alert(tx, AlertKind::KeyCreated, &minted.key, "", extra, now)?;
        expiry_alert_now(tx, &minted.key, now)?;
        Ok::<_, LifecycleError>(())
    })?;
    Ok(minted)
}

/// The limits of the plan named `plan`; an unknown plan is an error naming the `plan` field.
fn plan_limits(tx: &Tx, plan: &Plan) -> Result<PlanLimits, LifecycleError> {
    match plans::find(tx, plan.as_str())? {
        Some(found) => Ok(found.limits),
        None => Err(LifecycleError::Invalid(FieldError::new(
            "plan",
            format!("unknown plan {:?}; see GET /v1/plans", plan.as_str()),
        ))),
    }
}

/// Writes the audit entry of a change to `key` (target: its id; team: its team).
pub fn record(
    tx: &Tx,
    actor: &Actor,
    action: Action,
    key: &StoredKey,
    changes: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<()> {
    audit::record(tx, actor, action, &key.id, Some(&key.team), changes, now)
}

/// Raises a lifecycle alert about `key` (docs/webhooks.md).
fn alert(
    tx: &Tx,
    kind: AlertKind,
    key: &StoredKey,
    instance: &str,
    extra: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<()> {
    let key_ref = KeyRef::from(key);
    alerts::raise_all(tx, &[key_alert(kind, key_ref, instance, extra)], now)?;
    Ok(())
}

/// `key.expiring` at once for a key created or changed to expire within the notice (the minute
/// sweep would raise it within a minute anyway; this spares the wait).
fn expiry_alert_now(tx: &Tx, key: &StoredKey, now: DateTime<Utc>) -> Result<()> {
    let Some(expires_at) = key.expires_at.filter(|_| key.active) else {
        return Ok(());
    };
    let key_ref = KeyRef::from(key);
    let alerts: Vec<_> = expiry_alert(key_ref, expires_at, now).into_iter().collect();
    alerts::raise_all(tx, &alerts, now)?;
    Ok(())
}

/// The key `id`, tombstones included, if `actor` may see it.
pub fn find_visible(tx: &Tx, actor: &Actor, id: &str) -> Result<StoredKey, LifecycleError> {
    match keys::find(tx, id)? {
        Some(key) if actor.sees(Some(&key.team)) => Ok(key),
        _ => Err(LifecycleError::NotFound),
    }
}

fn find_live(tx: &Tx, actor: &Actor, id: &str) -> Result<StoredKey, LifecycleError> {
    let key = find_visible(tx, actor, id)?;
    if key.deleted {
        return Err(LifecycleError::Deleted);
    }
    Ok(key)
}

/// The key with this id, unless it does not exist, was deleted or `actor` may not see it.
pub fn show(store: &Store, actor: &Actor, id: &str) -> Result<StoredKey, LifecycleError> {
    store.read(|tx| find_live(tx, actor, id))
}

/// Applies `changes`; an empty change set returns the key untouched, without a new version.
/// The quota mark is recomputed for the new plan and limits (raising them lifts it).
pub fn update(
    store: &Store,
    actor: &Actor,
    id: &str,
    changes: KeyChanges,
    now: DateTime<Utc>,
) -> Result<StoredKey, LifecycleError> {
    store.write(|tx| {
        let mut key = find_live(tx, actor, id)?;
        if changes.is_empty() {
            return Ok(key);
        }
        let before = key.clone();
        apply(&mut key, changes);
        // A leaked secret stays compromised: the key is rotated, never turned back on.
        if key.leak.is_some() && key.active && !before.active {
            return Err(LifecycleError::Leaked);
        }
        if key.plan != before.plan {
            key.plan_limits = plan_limits(tx, &key.plan)?;
        }
        served_record_is_valid(&key, now)?;
        key.quota_exceeded_until = current_mark(tx, &key, now)?;
        key.updated_at = now;
        key.updated_version = bump_version(tx)?;
        keys::update(tx, &key)?;
        teams::ensure(tx, &key.team, now)?;
        if key.team != before.team {
            // The key's use moved from one team's sum to the other's: both teams' keys (the
            // moved one included, now counted in its new team) get their marks again.
            let mut members = keys::of_team(tx, &before.team)?;
            members.extend(keys::of_team(tx, &key.team)?);
            remark(tx, &members, now)?;
        }
        let changed = key_changes(&before, &key);
        record(tx, actor, Action::KeyUpdate, &key, &changed, now)?;
        expiry_alert_now(tx, &key, now)?;
        if before.active && !key.active {
            let instance = key.updated_version.to_string();
            alert(tx, AlertKind::KeyRevoked, &key, &instance, json!({}), now)?;
        }
        Ok(key)
    })
}

/// Lays `changes` over `key`: each given field replaces its value; `limits` changes only the
/// overrides it names.
fn apply(key: &mut StoredKey, changes: KeyChanges) {
    let KeyChanges {
        name,
        team,
        scopes,
        allowed_ips,
        expires_at,
        plan,
        limits,
        active,
    } = changes;
    if let Some(name) = name {
        key.name = name;
    }
    if let Some(team) = team {
        key.team = team;
    }
    if let Some(scopes) = scopes {
        key.scopes = scopes;
    }
    if let Some(allowed_ips) = allowed_ips {
        key.allowed_ips = allowed_ips;
    }
    if let Some(expires_at) = expires_at {
        key.expires_at = expires_at;
    }
    if let Some(plan) = plan {
        key.plan = plan;
    }
    key.limits = limits.applied_to(key.limits);
    key.active = active.unwrap_or(key.active);
}

/// Mints a successor with the same settings and lets the old key live `grace_seconds` more
/// (or less, if it was due to expire sooner anyway).
pub fn rotate(
    store: &Store,
    actor: &Actor,
    id: &str,
    grace_seconds: u64,
    now: DateTime<Utc>,
) -> Result<MintedKey, LifecycleError> {
    store.write(|tx| {
        let mut old = find_live(tx, actor, id)?;
        let settings = KeySettings {
            name: old.name.clone(),
            environment: old.environment,
            team: old.team.clone(),
            scopes: old.scopes.clone(),
            allowed_ips: old.allowed_ips.clone(),
            expires_at: old.expires_at,
            plan: old.plan.clone(),
            limits: old.limits,
        };
        let mut minted = mint(&settings, now, Some(old.id.clone()))?;
        minted.key.plan_limits = old.plan_limits;
        minted.key.quota_exceeded_until = current_mark(tx, &minted.key, now)?;
        old.expires_at = Some(clock::end_of_grace(old.expires_at, now, grace_seconds));
        served_record_is_valid(&minted.key, now)?;
        let version = bump_version(tx)?;
        old.updated_at = now;
        old.updated_version = version;
        keys::update(tx, &old)?;
        minted.key.updated_version = version;
        minted.key.seq = keys::insert(tx, &minted.key)?;
        let changes = serde_json::json!({
            "grace_seconds": grace_seconds,
            "expires_at": old.expires_at.map(clock::format),
            "successor": minted.key.id,
        });
        record(tx, actor, Action::KeyRotate, &old, &changes, now)?;
        let extra = json!({
            "successor_id": minted.key.id,
            "expires_at": old.expires_at.map(clock::format),
        });
        alert(tx, AlertKind::KeyRotated, &old, &minted.key.id, extra, now)?;
        Ok(minted)
    })
}

/// One page of the admin listing: up to `limit` keys matching `filter` after `after`.
pub fn list(
    store: &Store,
    filter: &KeyFilter,
    after: Position,
    limit: usize,
) -> Result<RowPage, Error> {
    store.read(|tx| keys::list(tx, filter, after, limit))
}

/// Replaces the key by a tombstone the snapshot feed reports as deleted.
pub fn delete(
    store: &Store,
    actor: &Actor,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), LifecycleError> {
    store.write(|tx| {
        let mut key = match find_visible(tx, actor, id)? {
            key if !key.deleted => key,
            _ => return Err(LifecycleError::NotFound),
        };
        key.deleted = true;
        key.active = false;
        key.updated_at = now;
        key.updated_version = bump_version(tx)?;
        keys::update(tx, &key)?;
        record(
            tx,
            actor,
            Action::KeyDelete,
            &key,
            &serde_json::json!({}),
            now,
        )?;
        alert(tx, AlertKind::KeyDeleted, &key, "", json!({}), now)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plans::{Environment, LimitOverrides, Plan};
    use crate::store::db::current_version;
    use crate::store::db::temp_store;

    fn settings() -> KeySettings {
        KeySettings {
            name: "ci".into(),
            environment: Environment::Test,
            team: "infra".into(),
            scopes: vec!["submit_job".into()],
            allowed_ips: vec!["10.0.0.0/8".into()],
            expires_at: None,
            plan: Plan::Pro,
            limits: LimitOverrides {
                per_minute: Some(5),
                ..LimitOverrides::default()
            },
        }
    }

    #[test]
    fn every_change_moves_the_version_and_stamps_rows() {
        let (store, dir) = temp_store("lifecycle", "versions");
        let now = clock::now();
        let created = create(&store, &Actor::bootstrap(), &settings(), now).unwrap();
        assert!(created.secret.starts_with("pk_test_"));
        assert_eq!(created.key.updated_version, 1);
        let changes = KeyChanges {
            active: Some(false),
            ..KeyChanges::default()
        };
        let updated = update(&store, &Actor::bootstrap(), &created.key.id, changes, now).unwrap();
        assert_eq!((updated.active, updated.updated_version), (false, 2));
        let unchanged = update(
            &store,
            &Actor::bootstrap(),
            &created.key.id,
            KeyChanges::default(),
            now,
        )
        .unwrap();
        assert_eq!(unchanged.updated_version, 2);
        let rotated = rotate(&store, &Actor::bootstrap(), &created.key.id, 60, now).unwrap();
        assert_eq!(rotated.key.updated_version, 3);
        assert_eq!(
            rotated.key.rotated_from.as_deref(),
            Some(created.key.id.as_str())
        );
        assert_eq!(
            (rotated.key.scopes.clone(), rotated.key.plan),
            (settings().scopes, Plan::Pro)
        );
        let old = show(&store, &Actor::bootstrap(), &created.key.id).unwrap();
        assert_eq!(old.expires_at, Some(now + chrono::Duration::seconds(60)));
        delete(&store, &Actor::bootstrap(), &created.key.id, now).unwrap();
        assert!(matches!(
            show(&store, &Actor::bootstrap(), &created.key.id),
            Err(LifecycleError::Deleted)
        ));
        assert!(matches!(
            delete(&store, &Actor::bootstrap(), &created.key.id, now),
            Err(LifecycleError::NotFound)
        ));
        assert_eq!(store.read(current_version).unwrap(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_an_earlier_expiry() {
        let (store, dir) = temp_store("lifecycle", "expiry");
        let now = clock::now();
        let soon = now + chrono::Duration::seconds(30);
        let created = create(
            &store,
            &Actor::bootstrap(),
            &KeySettings {
                expires_at: Some(soon),
                ..settings()
            },
            now,
        )
        .unwrap();
        rotate(&store, &Actor::bootstrap(), &created.key.id, 3600, now).unwrap();
        assert_eq!(
            show(&store, &Actor::bootstrap(), &created.key.id)
                .unwrap()
                .expires_at,
            Some(soon)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Whatever the admin API accepts, the filter accepts: bodies built from awkward pieces
    /// (long Unicode, invisible formatting, control characters, odd networks, extreme limits)
    /// go through the API's validation; every one it accepts is minted and served as a
    /// snapshot record, and the filter's own validation must take it.
    #[test]
    fn anything_the_admin_api_accepts_the_filter_accepts() {
        use crate::wire::validate::{CreateKeyRequest, Rules};
        // Each pool: (values the API should take, values it should refuse).
        let texts: (&[&str], &[&str]) = (
            &["ci", "🔑", "東", "é", "a b", "x", "😀😀"],
            &[
                "\u{202E}",
                "\u{200B}",
                "\u{0}",
                "\u{1b}[2J",
                "\u{7f}",
                "\u{FEFF}",
            ],
        );
        let ips: (&[&str], &[&str]) = (
            &[
                "10.0.0.1",
                "10.0.0.1/8",
                "::ffff:127.0.0.1",
                "::ffff:10.0.0.0/104",
                "::1",
                "2001:db8::1/32",
                "0.0.0.0/0",
                "::/0",
                "::ffff:0:0/95",
            ],
            &["10.0.0.0/33", "nope"],
        );
        let limits: (&[&str], &[&str]) = (
            &["null", "1", "9223372036854775807"],
            &["0", "9223372036854775808"],
        );
        let scopes = ["submit_job", "check_status", "list_models"];
        let allowed: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let now = clock::now();
        let rules = Rules {
            allowed_scopes: &allowed,
            now,
        };
        // A fixed xorshift sequence: the same cases every run.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let mut pick = |(good, bad): (&[&'static str], &[&'static str])| -> &'static str {
            if next(10) == 0 {
                bad[next(bad.len())]
            } else {
                good[next(good.len())]
            }
        };
        let (mut accepted, mut refused) = (0, 0);
        for round in 0..3_000usize {
            let repeat = [1, 2, 64, 127, 128, 129][round % 6];
            let name = pick(texts).repeat(repeat) + pick(texts);
            let team = pick(texts).repeat([0, 1, 90, 128, 200][round % 5]);
            let ip_list: Vec<&str> = (0..round % 4).map(|_| pick(ips)).collect();
            let scope_list: Vec<&str> = (0..round % 3).map(|i| scopes[(round + i) % 3]).collect();
            let limit = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
            let body = serde_json::json!({
                "name": name,
                "team": team,
                "allowed_ips": ip_list,
                "scopes": scope_list,
                "limits": {"per_minute": limit(pick(limits)), "concurrent": limit(pick(limits))},
            });
            let settings = serde_json::from_value::<CreateKeyRequest>(body.clone())
                .ok()
                .and_then(|request| rules.create(request).ok());
            let Some(settings) = settings else {
                refused += 1;
                continue;
            };
            accepted += 1;
            let minted = mint(&settings, now, None).unwrap();
            let record = crate::domain::served::key_record(minted.key, now);
            if let Err(error) = keygate_contract::record::validate_record(&record, 1) {
                panic!("the API accepted {body} but the filter refuses it: {error}");
            }
        }
        assert!(
            accepted > 300 && refused > 300,
            "{accepted} accepted, {refused} refused"
        );
    }
}
