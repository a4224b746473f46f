//! Teams' operations: list, show (with its keys, tokens and use of its quotas), create, change,
//! delete, each change with its audit entry. Changing a team's plan or quotas re-marks its keys
//! in the same transaction, so proxies get the new marks in the next delta.

use crate::app::quota::refresh_marks;
use crate::domain::alerts::AlertSettings;
use crate::domain::audit::{changed_fields, Action, Actor};
use crate::domain::quota::{self, QuotaUsage};
use crate::domain::teams::{team_quotas, Team, TeamChanges, TeamDetail, LISTED_KEYS};
use crate::store::audit;
use crate::store::db::Store;
use crate::store::sql::{Error, Result, Tx};
use crate::store::{keys, plans, teams, tokens};
use chrono::{DateTime, Utc};
use keygate_contract::FieldError;
use serde_json::{json, Map, Value};
use std::fmt;

#[derive(Debug)]
pub enum TeamError {
    /// No such team, or not one the caller may see.
    NotFound,
    Exists,
    /// Live keys, unrevoked tokens or webhook endpoints name the team.
    InUse {
        keys: usize,
        tokens: usize,
        webhooks: usize,
    },
    Invalid(FieldError),
    Database(Error),
}

impl fmt::Display for TeamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TeamError::NotFound => write!(f, "no such team"),
            TeamError::Exists => write!(f, "a team of that name exists"),
            TeamError::InUse {
                keys,
                tokens,
                webhooks,
            } => write!(
                f,
                "{keys} key(s), {tokens} token(s) and {webhooks} webhook endpoint(s) belong to \
                 this team; delete or move them first"
            ),
            TeamError::Invalid(error) => write!(f, "{error}"),
            TeamError::Database(error) => write!(f, "database: {error}"),
        }
    }
}

impl From<Error> for TeamError {
    fn from(error: Error) -> Self {
        TeamError::Database(error)
    }
}

fn detail(tx: &Tx, team: Team, now: DateTime<Utc>, with_members: bool) -> Result<TeamDetail> {
    let shared_quotas = team_quotas(team.quotas, teams::plan_limits(tx, &team)?.as_ref());
    let sums = teams::allowed_sums(tx, &[team.name.as_str()], quota::periods(now))?;
    let [today, this_month] = sums.get(&team.name).copied().unwrap_or_default();
    let (key_count, _) = teams::members(tx, &team.name)?;
    let (keys, tokens) = if with_members {
        let listed = i64::try_from(LISTED_KEYS).unwrap_or(i64::MAX);
        let keys = keys::first_of_team(tx, &team.name, listed)?;
        (keys, tokens::list_unrevoked(tx, Some(&team.name))?)
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(TeamDetail {
        team,
        shared_quotas,
        usage: QuotaUsage { today, this_month },
        key_count,
        keys,
        tokens,
    })
}

/// The teams `actor` may see (a team token: its own), by name, without their members.
pub fn list(store: &Store, actor: &Actor, now: DateTime<Utc>) -> Result<Vec<TeamDetail>, Error> {
    store.read(|tx| {
        teams::list(tx, actor.team.as_deref())?
            .into_iter()
            .map(|team| detail(tx, team, now, false))
            .collect()
    })
}

fn find_visible(tx: &Tx, actor: &Actor, name: &str) -> Result<Team, TeamError> {
    match teams::find(tx, name)? {
        Some(team) if actor.sees(Some(&team.name)) => Ok(team),
        _ => Err(TeamError::NotFound),
    }
}

/// The team `name` with its keys, tokens and use.
pub fn show(
    store: &Store,
    actor: &Actor,
    name: &str,
    now: DateTime<Utc>,
) -> Result<TeamDetail, TeamError> {
    store.read(|tx| {
        let team = find_visible(tx, actor, name)?;
        Ok(detail(tx, team, now, true)?)
    })
}

fn check_plan(tx: &Tx, team: &Team) -> Result<(), TeamError> {
    match &team.plan {
        Some(plan) if plans::find(tx, plan.as_str())?.is_none() => {
            Err(TeamError::Invalid(FieldError::new(
                "plan",
                format!("unknown plan {:?}; see GET /v1/plans", plan.as_str()),
            )))
        }
        _ => Ok(()),
    }
}

/// The fields of a team an audit entry shows.
fn fields(team: &Team) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("plan".into(), json!(team.plan));
    fields.insert("per_day".into(), json!(team.quotas.per_day));
    fields.insert("per_month".into(), json!(team.quotas.per_month));
    fields
}

fn record(
    tx: &Tx,
    actor: &Actor,
    action: Action,
    team: &str,
    changes: Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<()> {
    audit::record(
        tx,
        actor,
        action,
        team,
        Some(team),
        &Value::Object(changes),
        now,
    )
}

pub fn create(
    store: &Store,
    actor: &Actor,
    team: &Team,
    now: DateTime<Utc>,
) -> Result<TeamDetail, TeamError> {
    store.write(|tx| {
        check_plan(tx, team)?;
        if !teams::insert(tx, team)? {
            return Err(TeamError::Exists);
        }
        record(tx, actor, Action::TeamCreate, &team.name, fields(team), now)?;
        Ok(detail(tx, team.clone(), now, true)?)
    })
}

/// Applies `changes`; when the shared quotas change, every live key of the team is re-marked
/// (raising or clearing its mark) and the team's quota alerts are evaluated.
pub fn update(
    store: &Store,
    actor: &Actor,
    name: &str,
    changes: &TeamChanges,
    now: DateTime<Utc>,
    settings: &AlertSettings,
) -> Result<TeamDetail, TeamError> {
    store.write(|tx| {
        let before = find_visible(tx, actor, name)?;
        let mut after = changes.applied_to(&before);
        if after == before {
            return Ok(detail(tx, after, now, true)?);
        }
        check_plan(tx, &after)?;
        after.updated_at = now;
        teams::update(tx, &after)?;
        refresh_marks(tx, &keys::of_team(tx, name)?, now, settings)?;
        let changed = changed_fields(&fields(&before), fields(&after));
        record(tx, actor, Action::TeamUpdate, name, changed, now)?;
        Ok(detail(tx, after, now, true)?)
    })
}

/// Deletes the team unless live keys or unrevoked tokens name it.
pub fn delete(
    store: &Store,
    actor: &Actor,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(), TeamError> {
    store.write(|tx| {
        let team = find_visible(tx, actor, name)?;
        let (keys, tokens) = teams::members(tx, &team.name)?;
        // An endpoint left behind would receive the events of a later team of the same name.
        let webhooks = crate::store::webhooks::count_of_team(tx, &team.name)?;
        if keys > 0 || tokens > 0 || webhooks > 0 {
            return Err(TeamError::InUse {
                keys,
                tokens,
                webhooks,
            });
        }
        teams::delete(tx, &team.name)?;
        record(tx, actor, Action::TeamDelete, &team.name, Map::new(), now)?;
        Ok(())
    })
}

/// Re-marks the keys of the teams on `plan` (its quotas changed).
pub fn refresh_plan_teams(
    tx: &Tx,
    plan: &str,
    now: DateTime<Utc>,
    settings: &AlertSettings,
) -> Result<()> {
    for team in teams::on_plan(tx, plan)? {
        refresh_marks(tx, &keys::of_team(tx, &team)?, now, settings)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "teams/tests.rs"]
mod tests;
