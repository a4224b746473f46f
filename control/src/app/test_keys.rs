//! Keys the operations' tests make (test builds only).

use crate::app;
use crate::domain::audit::Actor;
use crate::domain::keys::{KeySettings, MintedKey, StoredKey};
use crate::domain::plans::{Environment, LimitOverrides, Plan};
use crate::store::db::Store;
use chrono::{DateTime, Utc};

/// A test key of `team` (`""`: none) on the enterprise plan: no limits or quotas of its own.
pub fn key_in_team(store: &Store, team: &str, now: DateTime<Utc>) -> StoredKey {
    minted_in_team(store, team, now).key
}

/// The same, with its secret.
pub fn minted_in_team(store: &Store, team: &str, now: DateTime<Utc>) -> MintedKey {
    let settings = KeySettings {
        name: "k".into(),
        environment: Environment::Test,
        team: team.into(),
        scopes: Vec::new(),
        allowed_ips: Vec::new(),
        expires_at: None,
        plan: Plan::Enterprise,
        limits: LimitOverrides::default(),
    };
    app::keys::create(store, &Actor::bootstrap(), &settings, now).expect("a test key")
}
