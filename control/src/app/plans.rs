//! Plans' operations: create, change, delete, each with its audit entry. A change to a plan's
//! limits is a change to every key on it: one new version, stamped on those keys, so the
//! snapshot feed serves them in the next delta.

use crate::app::quota::refresh_marks;
use crate::app::teams::refresh_plan_teams;
use crate::domain::alerts::AlertSettings;
use crate::domain::audit::{changed_fields, Action, Actor};
use crate::domain::plans::{Plan, PlanChanges, PlanDefinition};
use crate::store::audit;
use crate::store::db::{bump_version, Store};
use crate::store::sql::{Error, Result, Tx};
use crate::store::{keys, plans};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::fmt;

#[derive(Debug)]
pub enum PlanError {
    NotFound,
    /// A plan of that name exists already.
    Exists,
    /// Live keys are on the plan; it cannot be deleted.
    InUse(usize),
    /// Teams are on the plan (it gives them their quotas); it cannot be deleted.
    TeamsOnPlan(Vec<String>),
    Database(Error),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NotFound => write!(f, "no such plan"),
            PlanError::Exists => write!(f, "a plan of that name exists"),
            PlanError::InUse(count) => write!(
                f,
                "{count} key(s) are on this plan; move them to another plan first"
            ),
            PlanError::TeamsOnPlan(teams) => write!(
                f,
                "team(s) {} are on this plan; move them to another plan first",
                teams.join(", ")
            ),
            PlanError::Database(error) => write!(f, "database: {error}"),
        }
    }
}

impl From<Error> for PlanError {
    fn from(error: Error) -> Self {
        PlanError::Database(error)
    }
}

/// The fields of a plan an audit entry shows.
pub fn fields(plan: &PlanDefinition) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("description".into(), Value::from(plan.description.clone()));
    for (field, value) in plan.limits.fields() {
        fields.insert(field.into(), Value::from(value));
    }
    fields
}

fn record(
    tx: &Tx,
    actor: &Actor,
    action: Action,
    plan: &Plan,
    changes: Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<()> {
    audit::record(
        tx,
        actor,
        action,
        plan.as_str(),
        None,
        &Value::Object(changes),
        now,
    )
}

/// Every plan, oldest first.
pub fn list(store: &Store) -> Result<Vec<PlanDefinition>, Error> {
    store.read(plans::list)
}

/// The plan named `name`.
pub fn show(store: &Store, name: &str) -> Result<Option<PlanDefinition>, Error> {
    store.read(|tx| plans::find(tx, name))
}

pub fn create(
    store: &Store,
    actor: &Actor,
    plan: &PlanDefinition,
    now: DateTime<Utc>,
) -> Result<(), PlanError> {
    store.write(|tx| {
        if plans::find(tx, plan.name.as_str())?.is_some() {
            return Err(PlanError::Exists);
        }
        plans::insert(tx, plan, now)?;
        record(tx, actor, Action::PlanCreate, &plan.name, fields(plan), now)?;
        Ok(())
    })
}

/// Applies `changes`. When the limits change, every live key on the plan is stamped with one
/// new version (so proxies get the new effective limits in the next delta) and its quota mark
/// is recomputed.
pub fn update(
    store: &Store,
    actor: &Actor,
    name: &str,
    changes: &PlanChanges,
    now: DateTime<Utc>,
    settings: &AlertSettings,
) -> Result<PlanDefinition, PlanError> {
    store.write(|tx| {
        let before = plans::find(tx, name)?.ok_or(PlanError::NotFound)?;
        let after = changes.apply(&before);
        if after == before {
            return Ok(after);
        }
        plans::update(tx, &after, now)?;
        if after.limits != before.limits {
            let version = bump_version(tx)?;
            keys::stamp_plan(tx, name, version)?;
            refresh_marks(tx, &keys::on_plan(tx, name)?, now, settings)?;
            refresh_plan_teams(tx, name, now, settings)?;
        }
        let changed = changed_fields(&fields(&before), fields(&after));
        record(tx, actor, Action::PlanUpdate, &after.name, changed, now)?;
        Ok(after)
    })
}

/// Deletes the plan unless live keys are on it.
pub fn delete(
    store: &Store,
    actor: &Actor,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(), PlanError> {
    store.write(|tx| {
        let plan = plans::find(tx, name)?.ok_or(PlanError::NotFound)?;
        let in_use = keys::live_count_on_plan(tx, name)?;
        if in_use > 0 {
            return Err(PlanError::InUse(in_use));
        }
        let teams = crate::store::teams::on_plan(tx, name)?;
        if !teams.is_empty() {
            return Err(PlanError::TeamsOnPlan(teams));
        }
        plans::delete(tx, name)?;
        record(tx, actor, Action::PlanDelete, &plan.name, Map::new(), now)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app;
    use crate::domain::clock;
    use crate::domain::keys::KeySettings;
    use crate::domain::plans::{Environment, LimitOverrides, PlanLimits};
    use crate::store::db::current_version;
    use crate::store::db::temp_store;
    use crate::wire::plans::validate_plan_changes;

    fn settings(plan: Plan) -> KeySettings {
        KeySettings {
            name: "k".into(),
            environment: Environment::Test,
            team: String::new(),
            scopes: Vec::new(),
            allowed_ips: Vec::new(),
            expires_at: None,
            plan,
            limits: LimitOverrides::default(),
        }
    }

    #[test]
    fn a_limit_change_stamps_the_plans_keys_and_deletion_waits_for_them() {
        let (store, dir) = temp_store("plans", "change");
        let actor = Actor::bootstrap();
        let now = clock::now();
        let gold = PlanDefinition {
            name: Plan::new("gold"),
            description: String::new(),
            limits: PlanLimits {
                per_minute: Some(2),
                ..PlanLimits::default()
            },
        };
        create(&store, &actor, &gold, now).unwrap();
        assert!(matches!(
            create(&store, &actor, &gold, now),
            Err(PlanError::Exists)
        ));
        let key = app::keys::create(&store, &actor, &settings(Plan::new("gold")), now)
            .unwrap()
            .key;
        assert_eq!(key.plan_limits.per_minute, Some(2));
        let other = app::keys::create(&store, &actor, &settings(Plan::Pro), now)
            .unwrap()
            .key;
        let changes = validate_plan_changes(
            serde_json::from_value(serde_json::json!({"per_minute": 100})).unwrap(),
        )
        .unwrap();
        update(
            &store,
            &actor,
            "gold",
            &changes,
            now,
            &AlertSettings::default(),
        )
        .unwrap();
        let version = store.read(current_version).unwrap();
        let reread = store.read(|tx| keys::find(tx, &key.id)).unwrap().unwrap();
        assert_eq!(reread.updated_version, version);
        assert_eq!(reread.plan_limits.per_minute, Some(100));
        let untouched = store.read(|tx| keys::find(tx, &other.id)).unwrap().unwrap();
        assert_eq!(untouched.updated_version, other.updated_version);
        update(
            &store,
            &actor,
            "gold",
            &changes,
            now,
            &AlertSettings::default(),
        )
        .unwrap();
        assert_eq!(store.read(current_version).unwrap(), version);
        assert!(matches!(
            delete(&store, &actor, "gold", now),
            Err(PlanError::InUse(1))
        ));
        app::keys::delete(&store, &actor, &key.id, now).unwrap();
        delete(&store, &actor, "gold", now).unwrap();
        assert!(matches!(
            delete(&store, &actor, "gold", now),
            Err(PlanError::NotFound)
        ));
        let unknown = app::keys::create(&store, &actor, &settings(Plan::new("gold")), now);
        match unknown {
            Err(error) => assert!(error.to_string().starts_with("plan:"), "{error}"),
            Ok(_) => panic!("a key on an unknown plan was created"),
        }
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
