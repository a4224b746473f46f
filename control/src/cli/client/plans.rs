//! `keygate-control plans …`: the plans keys are on and their default limits.

use crate::cli::args::{ClientArgs, PlansCommand};
use crate::cli::client::answers::{json as json_body, Deleted, Reply};
use crate::cli::client::commands::{connect, limits_body, limits_patch, print_json};
use crate::cli::client::error::ClientError;
use crate::cli::client::table::{column, render, text, Fit};
use crate::domain::plans::PlanDefinition;
use crate::wire::views::PlanList;
use serde_json::{json, Map, Value};

/// A plan as the admin API shows it: the very type the service serves.
pub type Plan = PlanDefinition;

/// A plan created by `POST /v1/plans`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlan(pub Plan);

impl Reply for Plan {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a plan");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json_body(body)
    }
}

impl Reply for NewPlan {
    const STATUS: u16 = 201;
    const BODY: Option<&'static str> = Some("a new plan");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json_body(body).map(NewPlan)
    }
}

impl Reply for PlanList {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a list of plans");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json_body(body)
    }
}

fn plan_path(name: &str) -> String {
    // Plan names are slugs; anything else would not match a plan anyway.
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("/v1/plans/{safe}")
}

fn limit(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |value| value.to_string())
}

/// One line per plan; `-` is unlimited.
pub fn plan_table(plans: &[Plan]) -> String {
    let rows: Vec<Vec<String>> = plans
        .iter()
        .map(|plan| {
            let limits = &plan.limits;
            vec![
                text(plan.name.as_str()),
                limit(limits.per_minute),
                limit(limits.per_hour),
                limit(limits.per_day),
                limit(limits.per_month),
                limit(limits.concurrent),
                text(&plan.description),
            ]
        })
        .collect();
    let columns = [
        column("PLAN", Fit::Keep),
        column("MINUTE", Fit::Keep),
        column("HOUR", Fit::Keep),
        column("DAY", Fit::Keep),
        column("MONTH", Fit::Keep),
        column("CONCURRENT", Fit::Keep),
        column("DESCRIPTION", Fit::Truncate),
    ];
    render(&columns, &rows, true)
}

fn print_plan(plan: &Plan, json: bool, verb: &str) -> Result<(), ClientError> {
    if json {
        return print_json(plan);
    }
    println!("{verb} plan {}.", plan.name.as_str());
    println!("{}", plan_table(std::slice::from_ref(plan)));
    Ok(())
}

pub fn run_plans(client_args: ClientArgs, command: PlansCommand) -> Result<(), ClientError> {
    let (client, json) = connect(client_args)?;
    match command {
        PlansCommand::List => {
            let list: PlanList = client.get("/v1/plans", &[])?;
            if json {
                print_json(&list)?;
            } else if list.plans.is_empty() {
                println!("No plans.");
            } else {
                println!("{}", plan_table(&list.plans));
            }
        }
        PlansCommand::Create {
            name,
            description,
            limits,
        } => {
            let mut body = match limits_body(&limits) {
                Value::Object(fields) => fields,
                _ => Map::new(),
            };
            body.insert("name".into(), Value::from(name));
            if let Some(description) = description {
                body.insert("description".into(), Value::from(description));
            }
            let NewPlan(plan) = client.post("/v1/plans", &Value::Object(body))?;
            print_plan(&plan, json, "Created")?;
        }
        PlansCommand::Update {
            name,
            description,
            limits,
            clear_limits,
        } => {
            let mut body = match limits_patch(&limits, &clear_limits)? {
                Some(Value::Object(fields)) => fields,
                _ => Map::new(),
            };
            if let Some(description) = description {
                body.insert("description".into(), Value::from(description));
            }
            if body.is_empty() {
                return Err(ClientError::Usage(
                    "nothing to change: give a limit, --clear-limit or --description".into(),
                ));
            }
            let plan: Plan = client.patch(&plan_path(&name), &Value::Object(body))?;
            print_plan(&plan, json, "Updated")?;
        }
        PlansCommand::Delete { name } => {
            let Deleted = client.delete(&plan_path(&name))?;
            if json {
                println!("{}", json!({ "name": name, "deleted": true }));
            } else {
                println!("Deleted plan {name}.");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plans::seeded_plans;

    #[test]
    fn the_seeded_plans_fit_80_columns() {
        let mut plans = seeded_plans().to_vec();
        plans[0].description = "d".repeat(256);
        let table = plan_table(&plans);
        assert!(
            table.lines().all(|line| line.chars().count() <= 80),
            "{table}"
        );
        assert!(table.starts_with("PLAN"), "{table}");
        let pro = table.lines().nth(2).unwrap();
        assert!(pro.starts_with("pro  ") && pro.contains("300"), "{pro}");
    }

    #[test]
    fn answers_are_read_into_the_served_types() {
        let body = serde_json::to_vec(&seeded_plans()[1]).unwrap();
        assert_eq!(Plan::from_body(&body).unwrap(), seeded_plans()[1]);
        assert!(Plan::from_body(b"{\"name\": 1}").is_err());
        let list = serde_json::to_vec(&json!({"plans": seeded_plans()})).unwrap();
        assert_eq!(PlanList::from_body(&list).unwrap().plans.len(), 4);
    }

    #[test]
    fn paths_keep_only_slug_characters() {
        assert_eq!(plan_path("gold-2"), "/v1/plans/gold-2");
        assert_eq!(plan_path("../keys?x"), "/v1/plans/keysx");
    }
}
