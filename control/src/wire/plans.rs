//! The plan bodies of the admin API (`POST /v1/plans`, `PATCH /v1/plans/{name}`) and their
//! validation into a plan or its changes.

use crate::domain::patch::{not_null, present_or_null};
use crate::domain::plans::{
    plan_name, PlanChanges, PlanDefinition, PlanLimits, MAX_PLAN_DESCRIPTION_CHARS,
};
use keygate_contract::fields;
use keygate_contract::FieldError;
use serde::Deserialize;

/// Body of `POST /v1/plans`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePlanRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub per_minute: Option<u64>,
    #[serde(default)]
    pub per_hour: Option<u64>,
    #[serde(default)]
    pub per_day: Option<u64>,
    #[serde(default)]
    pub per_month: Option<u64>,
    #[serde(default)]
    pub concurrent: Option<u64>,
}

/// Body of `PATCH /v1/plans/{name}`: a merge patch; `null` makes a limit unlimited.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlanRequest {
    #[serde(default, deserialize_with = "present_or_null")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub per_minute: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub per_hour: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub per_day: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub per_month: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub concurrent: Option<Option<u64>>,
}

fn description(text: String) -> Result<String, FieldError> {
    if text.chars().count() > MAX_PLAN_DESCRIPTION_CHARS {
        return Err(FieldError::new(
            "description",
            format!("must be at most {MAX_PLAN_DESCRIPTION_CHARS} characters"),
        ));
    }
    crate::wire::validate::printable("description", text)
}

fn plan_limits(limits: PlanLimits) -> Result<PlanLimits, FieldError> {
    for (field, value) in limits.fields() {
        fields::limit(field, value)?;
    }
    Ok(limits)
}

/// Checks a new plan.
pub fn validate_new_plan(request: CreatePlanRequest) -> Result<PlanDefinition, FieldError> {
    Ok(PlanDefinition {
        name: plan_name("name", &request.name)?,
        description: description(request.description)?,
        limits: plan_limits(PlanLimits {
            per_minute: request.per_minute,
            per_hour: request.per_hour,
            per_day: request.per_day,
            per_month: request.per_month,
            concurrent: request.concurrent,
        })?,
    })
}

/// Checks a plan PATCH.
pub fn validate_plan_changes(request: UpdatePlanRequest) -> Result<PlanChanges, FieldError> {
    let limit = |field: &str, value: Option<Option<u64>>| {
        if let Some(value) = value {
            fields::limit(field, value)?;
        }
        Ok::<_, FieldError>(value)
    };
    Ok(PlanChanges {
        description: not_null(
            "description",
            Some("send \"\" for none"),
            request.description,
        )?
        .map(description)
        .transpose()?,
        per_minute: limit("per_minute", request.per_minute)?,
        per_hour: limit("per_hour", request.per_hour)?,
        per_day: limit("per_day", request.per_day)?,
        per_month: limit("per_month", request.per_month)?,
        concurrent: limit("concurrent", request.concurrent)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plans::seeded_plans;

    #[test]
    fn new_plans_are_validated_field_by_field() {
        let request = |body: serde_json::Value| {
            validate_new_plan(serde_json::from_value(body).unwrap()).map_err(|e| e.to_string())
        };
        let gold = request(serde_json::json!({"name": "gold", "per_minute": 5})).unwrap();
        assert_eq!(gold.limits.per_minute, Some(5));
        assert_eq!(gold.description, "");
        let cases = [
            (serde_json::json!({"name": "Gold"}), "name:"),
            (
                serde_json::json!({"name": "g", "per_minute": 0}),
                "per_minute:",
            ),
            (serde_json::json!({"name": "g", "per_hour": 0}), "per_hour:"),
            (serde_json::json!({"name": "g", "per_day": 0}), "per_day:"),
            (
                serde_json::json!({"name": "g", "per_month": 0}),
                "per_month:",
            ),
            (
                serde_json::json!({"name": "g", "concurrent": 0}),
                "concurrent:",
            ),
            (
                serde_json::json!({"name": "g", "description": "a\nb"}),
                "description:",
            ),
            (
                serde_json::json!({"name": "g", "description": "d".repeat(257)}),
                "description:",
            ),
        ];
        for (body, field) in cases {
            let error = request(body.clone()).unwrap_err();
            assert!(error.starts_with(field), "{body}: {error}");
        }
    }

    #[test]
    fn plan_changes_keep_absent_fields_and_null_clears_a_limit() {
        let changes = |body: serde_json::Value| {
            validate_plan_changes(serde_json::from_value(body).unwrap()).map_err(|e| e.to_string())
        };
        let plan = seeded_plans()[0].clone();
        let patched = changes(serde_json::json!({"per_minute": null, "per_hour": 9}))
            .unwrap()
            .apply(&plan);
        assert_eq!(patched.limits.per_minute, None);
        assert_eq!(patched.limits.per_hour, Some(9));
        assert_eq!(patched.limits.per_day, Some(1_000));
        assert_eq!(patched.description, plan.description);
        assert!(changes(serde_json::json!({"description": null}))
            .unwrap_err()
            .starts_with("description:"));
        assert!(changes(serde_json::json!({"concurrent": 0}))
            .unwrap_err()
            .starts_with("concurrent:"));
        assert!(
            serde_json::from_value::<UpdatePlanRequest>(serde_json::json!({"name": "x"})).is_err()
        );
    }
}
