//! A key as the service keeps it (everything but the secret, which is never kept), and the
//! status a listing filters by.

use crate::domain::leaks::KeyLeak;
use crate::domain::plans::{Environment, LimitOverrides, LimitPatch, Plan, PlanLimits};
use crate::domain::secrets;
use chrono::{DateTime, Utc};

/// A key row as stored: everything but the secret, which is never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Insertion order; what pagination cursors point at.
    pub seq: i64,
    pub id: String,
    pub hash: String,
    pub prefix: String,
    pub last4: String,
    pub name: String,
    pub environment: Environment,
    pub team: String,
    pub scopes: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub active: bool,
    pub plan: Plan,
    /// The plan's limits as read with the row (not stored on it).
    pub plan_limits: PlanLimits,
    pub limits: LimitOverrides,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub rotated_from: Option<String>,
    pub deleted: bool,
    pub updated_version: u64,
    /// The instant until which the key is over its fleet-wide quota, as last computed; it may
    /// have passed since (see `quota::mark_in_force`).
    pub quota_exceeded_until: Option<DateTime<Utc>>,
    /// The start of the newest hour a usage report counted allowed requests in; not part of the
    /// snapshot, so setting it changes no version.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The first report of this key found in public; not part of the snapshot.
    pub leak: Option<KeyLeak>,
}

/// Whether a key authenticates right now. Each key has exactly one: `Inactive` (revoked) wins
/// over `Expired` (`expires_at` has passed), and `Active` is neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
    Expired,
}

impl KeyStatus {
    pub fn parse(name: &str) -> Option<KeyStatus> {
        match name {
            "active" => Some(KeyStatus::Active),
            "inactive" => Some(KeyStatus::Inactive),
            "expired" => Some(KeyStatus::Expired),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Inactive => "inactive",
            KeyStatus::Expired => "expired",
        }
    }
}

/// The settings a key is created with, validated and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySettings {
    pub name: String,
    pub environment: Environment,
    pub team: String,
    pub scopes: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub plan: Plan,
    pub limits: LimitOverrides,
}

/// The validated subset of fields a PATCH changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub team: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub allowed_ips: Option<Vec<String>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub plan: Option<Plan>,
    /// The overrides to change; the default changes none.
    pub limits: LimitPatch,
    pub active: Option<bool>,
}

impl KeyChanges {
    pub fn is_empty(&self) -> bool {
        *self == KeyChanges::default()
    }
}

/// Filters of the admin listing; `None` matches everything.
#[derive(Debug, Default)]
pub struct KeyFilter {
    pub team: Option<String>,
    pub environment: Option<Environment>,
    pub active: Option<bool>,
    pub status: Option<KeyStatus>,
    /// The instant `status` tells expired keys by; `None` is now, as the database sees it.
    pub now: Option<DateTime<Utc>>,
}

/// A freshly minted key and its secret, which exists only in this value and the response.
pub struct MintedKey {
    pub key: StoredKey,
    pub secret: String,
}

/// A new key row for `settings` with a new secret; not yet stored.
pub fn mint(
    settings: &KeySettings,
    now: DateTime<Utc>,
    rotated_from: Option<String>,
) -> Result<MintedKey, getrandom::Error> {
    let secret = secrets::generate_secret(settings.environment)?;
    let key = StoredKey {
        seq: 0,
        id: secrets::generate_key_id()?,
        hash: keygate_contract::key_hash::hash_key(&secret),
        prefix: settings.environment.secret_prefix().to_string(),
        last4: secrets::last4(&secret),
        name: settings.name.clone(),
        environment: settings.environment,
        team: settings.team.clone(),
        scopes: settings.scopes.clone(),
        allowed_ips: settings.allowed_ips.clone(),
        expires_at: settings.expires_at,
        active: true,
        plan: settings.plan.clone(),
        plan_limits: PlanLimits::default(),
        limits: settings.limits,
        created_at: now,
        updated_at: now,
        rotated_from,
        deleted: false,
        updated_version: 0,
        quota_exceeded_until: None,
        last_used_at: None,
        leak: None,
    };
    Ok(MintedKey { key, secret })
}
