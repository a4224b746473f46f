//! Team rows, and the allowed requests of a team's keys that its shared quotas count.

use crate::domain::plans::{Plan, PlanLimits, Quotas};
use crate::domain::teams::Team;
use crate::domain::usage_report::ALLOWED_CODE;
use crate::store::plans;
use crate::store::sql::{named_params, Params, Result, Row, Tx};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

const COLUMNS: &str = "name, plan, per_day, per_month, created_at, updated_at";

fn quota(row: &Row, column: usize) -> Result<Option<u64>> {
    let value: Option<i64> = row.get(column)?;
    Ok(value.and_then(|value| u64::try_from(value).ok()))
}

fn from_row(row: &Row) -> Result<Team> {
    let plan: Option<String> = row.get(1)?;
    Ok(Team {
        name: row.get(0)?,
        plan: plan.map(Plan::new),
        quotas: Quotas {
            per_day: quota(row, 2)?,
            per_month: quota(row, 3)?,
        },
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    })
}

fn to_sql(value: Option<u64>) -> Option<i64> {
    value.and_then(|value| i64::try_from(value).ok())
}

fn team_params(team: &Team) -> Params {
    named_params! {
        ":name": team.name,
        ":plan": team.plan.as_ref().map(Plan::as_str),
        ":per_day": to_sql(team.quotas.per_day),
        ":per_month": to_sql(team.quotas.per_month),
        ":created_at": team.created_at,
        ":updated_at": team.updated_at,
    }
}

/// Adds `team`; false if one of its name exists (nothing is written then).
pub fn insert(tx: &Tx, team: &Team) -> Result<bool> {
    let added = tx.execute(
        &format!(
            "INSERT INTO teams ({COLUMNS})
             VALUES (:name, :plan, :per_day, :per_month, :created_at, :updated_at)
             ON CONFLICT (name) DO NOTHING"
        ),
        team_params(team),
    )?;
    Ok(added == 1)
}

/// Makes sure a team named `name` exists (a key or token naming a new team creates it, with no
/// plan and no quotas); true if it was created. `""` is no team.
pub fn ensure(tx: &Tx, name: &str, now: DateTime<Utc>) -> Result<bool> {
    if name.is_empty() {
        return Ok(false);
    }
    insert(
        tx,
        &Team {
            name: name.to_string(),
            plan: None,
            quotas: Quotas::default(),
            created_at: now,
            updated_at: now,
        },
    )
}

pub fn find(tx: &Tx, name: &str) -> Result<Option<Team>> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM teams WHERE name = ?1"),
        [name],
        from_row,
    )
}

/// Every team (only `only`'s when given), by name.
pub fn list(tx: &Tx, only: Option<&str>) -> Result<Vec<Team>> {
    tx.query_map(
        &format!(
            "SELECT {COLUMNS} FROM teams WHERE (CAST(:only AS TEXT) IS NULL OR name = :only)
             ORDER BY name"
        ),
        named_params! { ":only": only },
        from_row,
    )
}

pub fn update(tx: &Tx, team: &Team) -> Result<()> {
    tx.execute(
        "UPDATE teams SET plan = :plan, per_day = :per_day, per_month = :per_month,
            updated_at = :updated_at WHERE name = :name AND created_at = :created_at",
        team_params(team),
    )?;
    Ok(())
}

pub fn delete(tx: &Tx, name: &str) -> Result<()> {
    tx.execute("DELETE FROM teams WHERE name = ?1", [name])?;
    Ok(())
}

/// The names of the teams on `plan`.
pub fn on_plan(tx: &Tx, plan: &str) -> Result<Vec<String>> {
    tx.query_map(
        "SELECT name FROM teams WHERE plan = ?1 ORDER BY name",
        [plan],
        |row| row.get(0),
    )
}

/// The plan limits of `team`'s plan (`None` without one, or for a plan since deleted).
pub fn plan_limits(tx: &Tx, team: &Team) -> Result<Option<PlanLimits>> {
    match &team.plan {
        Some(plan) => Ok(plans::find(tx, plan.as_str())?.map(|found| found.limits)),
        None => Ok(None),
    }
}

/// How many live keys and unrevoked tokens name `team`.
pub fn members(tx: &Tx, team: &str) -> Result<(usize, usize)> {
    let count = |sql: &str| -> Result<usize> {
        let count: i64 = tx.query_row(sql, [team], |row| row.get(0))?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    };
    Ok((
        count("SELECT count(*) FROM keys WHERE team = ?1 AND deleted = 0")?,
        count("SELECT count(*) FROM tokens WHERE team = ?1 AND revoked_at IS NULL")?,
    ))
}

/// The allowed requests of every key of each of `teams` (deleted keys included: what they used
/// still counts) in each of the two `ranges`, teams with none left out. One statement per team:
/// a report touches few teams.
pub fn allowed_sums(
    tx: &Tx,
    teams: &[&str],
    ranges: [(DateTime<Utc>, DateTime<Utc>); 2],
) -> Result<HashMap<String, [u64; 2]>> {
    let [(first_from, first_to), (second_from, second_to)] =
        ranges.map(|(from, to)| (from.timestamp(), to.timestamp()));
    let mut sums = HashMap::with_capacity(teams.len());
    for team in teams {
        let row = tx.query_row(
            "SELECT
                CAST(COALESCE(SUM(CASE WHEN at >= :first_from AND at < :first_to
                                  THEN count ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN at >= :second_from AND at < :second_to
                                  THEN count ELSE 0 END), 0) AS BIGINT)
             FROM (SELECT u.hour_start AS at, u.count AS count
                     FROM keys k JOIN usage_hourly u ON u.key_id = k.id
                    WHERE k.team = :team AND u.code = :code
                      AND u.hour_start >= :low AND u.hour_start < :high
                   UNION ALL
                   SELECT d.day_start, d.count
                     FROM keys k JOIN usage_daily d ON d.key_id = k.id
                    WHERE k.team = :team AND d.code = :code
                      AND d.day_start >= :low AND d.day_start < :high) AS counted",
            named_params! {
                ":first_from": first_from,
                ":first_to": first_to,
                ":second_from": second_from,
                ":second_to": second_to,
                ":team": *team,
                ":code": ALLOWED_CODE,
                ":low": first_from.min(second_from),
                ":high": first_to.max(second_to),
            },
            |row| {
                let first: i64 = row.get(0)?;
                let second: i64 = row.get(1)?;
                Ok([first, second].map(|sum| u64::try_from(sum).unwrap_or(0)))
            },
        )?;
        sums.insert((*team).to_string(), row);
    }
    Ok(sums)
}
