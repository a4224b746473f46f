//! Plan rows: the plans keys refer to by name, seeded with the four published plans.

use crate::domain::clock;
use crate::domain::plans::{seeded_plans, Plan, PlanDefinition, PlanLimits};
use crate::store::sql::{named_params, Dialect, Params, Result, Row, Tx};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Adds the four published plans; called when the plans table is new (a new database, or one
/// made before plans were data, when every key was on one of them).
pub fn seed(tx: &Tx) -> Result<()> {
    let now = clock::now();
    for plan in seeded_plans() {
        insert(tx, &plan, now)?;
    }
    Ok(())
}

fn to_sql(value: Option<u64>) -> Option<i64> {
    value.and_then(|value| i64::try_from(value).ok())
}

fn limit(row: &Row, column: usize) -> Result<Option<u64>> {
    let value: Option<i64> = row.get(column)?;
    Ok(value.and_then(|value| u64::try_from(value).ok()))
}

fn from_row(row: &Row) -> Result<PlanDefinition> {
    let name: String = row.get(0)?;
    Ok(PlanDefinition {
        name: Plan::new(name),
        description: row.get(1)?,
        limits: PlanLimits {
            per_minute: limit(row, 2)?,
            per_hour: limit(row, 3)?,
            per_day: limit(row, 4)?,
            per_month: limit(row, 5)?,
            concurrent: limit(row, 6)?,
        },
    })
}

const COLUMNS: &str = "name, description, per_minute, per_hour, per_day, per_month, concurrent";

/// The named parameters both writes of a plan row bind.
fn plan_params(plan: &PlanDefinition, now: DateTime<Utc>) -> Params {
    named_params! {
        ":name": plan.name.as_str(),
        ":description": plan.description,
        ":per_minute": to_sql(plan.limits.per_minute),
        ":per_hour": to_sql(plan.limits.per_hour),
        ":per_day": to_sql(plan.limits.per_day),
        ":per_month": to_sql(plan.limits.per_month),
        ":concurrent": to_sql(plan.limits.concurrent),
        ":now": now,
    }
}

/// Adds `plan` unless one of its name exists.
pub fn insert(tx: &Tx, plan: &PlanDefinition, now: DateTime<Utc>) -> Result<()> {
    tx.execute(
        "INSERT INTO plans (name, description, per_minute, per_hour, per_day, per_month,
            concurrent, created_at, updated_at)
         VALUES (:name, :description, :per_minute, :per_hour, :per_day, :per_month,
            :concurrent, :now, :now)
         ON CONFLICT (name) DO NOTHING",
        plan_params(plan, now),
    )?;
    Ok(())
}

/// Every plan, oldest first.
pub fn list(tx: &Tx) -> Result<Vec<PlanDefinition>> {
    // Creation order: SQLite's rowid, PostgreSQL's identity column.
    let order = match tx.dialect() {
        Dialect::Sqlite => "rowid",
        Dialect::Postgres => "created_order",
    };
    tx.query_map(
        &format!("SELECT {COLUMNS} FROM plans ORDER BY {order}"),
        (),
        from_row,
    )
}

/// The plan named `name`.
pub fn find(tx: &Tx, name: &str) -> Result<Option<PlanDefinition>> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM plans WHERE name = ?1"),
        [name],
        from_row,
    )
}

/// Writes `plan`'s description and limits over the row of its name.
pub fn update(tx: &Tx, plan: &PlanDefinition, now: DateTime<Utc>) -> Result<()> {
    tx.execute(
        "UPDATE plans SET description = :description, per_minute = :per_minute,
            per_hour = :per_hour, per_day = :per_day, per_month = :per_month,
            concurrent = :concurrent, updated_at = :now
         WHERE name = :name",
        plan_params(plan, now),
    )?;
    Ok(())
}

pub fn delete(tx: &Tx, name: &str) -> Result<()> {
    tx.execute("DELETE FROM plans WHERE name = ?1", [name])?;
    Ok(())
}

/// When each plan was last changed after its creation, by name (a handful of rows); plans never
/// changed are left out.
pub fn changed_at(tx: &Tx) -> Result<HashMap<String, DateTime<Utc>>> {
    let rows = tx.query_map(
        "SELECT name, created_at, updated_at FROM plans",
        (),
        |row| {
            Ok((
                row.get::<String>(0)?,
                row.get::<DateTime<Utc>>(1)?,
                row.get::<DateTime<Utc>>(2)?,
            ))
        },
    )?;
    Ok(rows
        .into_iter()
        .filter(|(_, created, updated)| updated > created)
        .map(|(name, _, updated)| (name, updated))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::temp_store;

    #[test]
    fn a_new_database_has_the_seeded_plans() {
        let (store, dir) = temp_store("plans", "seed");
        let plans = store.read(list).unwrap();
        assert_eq!(plans, seeded_plans().to_vec());
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
