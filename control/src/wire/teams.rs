//! The team bodies of the admin API (`/v1/teams`) and their views.

use crate::domain::clock;
use crate::domain::patch::present_or_null;
use crate::domain::plans::{plan_name, Plan, Quotas};
use crate::domain::teams::{Team, TeamChanges, TeamDetail};
use crate::wire::views::{KeyView, TokenView};
use chrono::{DateTime, Utc};
use keygate_contract::fields;
use keygate_contract::FieldError;
use serde::{Deserialize, Serialize};

/// Body of `POST /v1/teams`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeamRequest {
    pub name: String,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub per_day: Option<u64>,
    #[serde(default)]
    pub per_month: Option<u64>,
}

/// Body of `PATCH /v1/teams/{name}`: a merge patch; `null` clears the plan or a quota.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeamRequest {
    #[serde(default, deserialize_with = "present_or_null")]
    pub plan: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub per_day: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub per_month: Option<Option<u64>>,
}

fn quota(field: &str, value: Option<u64>) -> Result<Option<u64>, FieldError> {
    fields::limit(field, value)?;
    Ok(value)
}

pub fn validate_new_team(
    request: CreateTeamRequest,
    now: DateTime<Utc>,
) -> Result<Team, FieldError> {
    fields::display_label("name", &request.name)?;
    let name = request.name;
    if name.is_empty() {
        return Err(FieldError::new("name", "must not be empty"));
    }
    Ok(Team {
        name,
        plan: request
            .plan
            .map(|plan| plan_name("plan", &plan))
            .transpose()?,
        quotas: Quotas {
            per_day: quota("per_day", request.per_day)?,
            per_month: quota("per_month", request.per_month)?,
        },
        created_at: now,
        updated_at: now,
    })
}

pub fn validate_team_changes(request: UpdateTeamRequest) -> Result<TeamChanges, FieldError> {
    let quota_change = |field: &str, value: Option<Option<u64>>| {
        value.map(|value| quota(field, value)).transpose()
    };
    Ok(TeamChanges {
        plan: request
            .plan
            .map(|plan| plan.map(|plan| plan_name("plan", &plan)).transpose())
            .transpose()?,
        per_day: quota_change("per_day", request.per_day)?,
        per_month: quota_change("per_month", request.per_month)?,
    })
}

/// A team's use of its shared quotas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamQuotaUse {
    /// Allowed requests of all its keys today and this month (UTC).
    pub today: u64,
    pub this_month: u64,
    /// The quotas its keys share: its own, else its plan's (null: none).
    pub per_day: Option<u64>,
    pub per_month: Option<u64>,
}

/// A team as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamView {
    pub name: String,
    pub plan: Option<Plan>,
    /// The team's own quotas (null: its plan's apply, if any).
    pub per_day: Option<u64>,
    pub per_month: Option<u64>,
    pub usage: TeamQuotaUse,
    /// Live keys of the team.
    pub key_count: usize,
    /// Its first 100 live keys (`GET /v1/keys?team=` pages through all); absent in listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyView>>,
    /// Its unrevoked tokens; absent in listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<TokenView>>,
    pub created_at: String,
    pub updated_at: String,
}

impl TeamView {
    pub fn of(detail: TeamDetail, with_members: bool, now: DateTime<Utc>) -> TeamView {
        let TeamDetail {
            team,
            shared_quotas,
            usage,
            key_count,
            keys,
            tokens,
        } = detail;
        TeamView {
            name: team.name,
            plan: team.plan,
            per_day: team.quotas.per_day,
            per_month: team.quotas.per_month,
            usage: TeamQuotaUse {
                today: usage.today,
                this_month: usage.this_month,
                per_day: shared_quotas.per_day,
                per_month: shared_quotas.per_month,
            },
            key_count,
            keys: with_members.then(|| keys.into_iter().map(|key| KeyView::at(key, now)).collect()),
            tokens: with_members.then(|| tokens.into_iter().map(TokenView::from).collect()),
            created_at: clock::format(team.created_at),
            updated_at: clock::format(team.updated_at),
        }
    }
}

/// `GET /v1/teams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamList {
    pub teams: Vec<TeamView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_bodies_are_validated_field_by_field() {
        let now = clock::now();
        let create = |body: serde_json::Value| {
            validate_new_team(serde_json::from_value(body).unwrap(), now).map_err(|e| e.to_string())
        };
        let team =
            create(serde_json::json!({"name": "blue", "plan": "pro", "per_day": 5})).unwrap();
        assert_eq!(team.plan, Some(Plan::Pro));
        assert_eq!(team.quotas.per_day, Some(5));
        for (body, field) in [
            (serde_json::json!({"name": ""}), "name:"),
            (serde_json::json!({"name": "a\nb"}), "name:"),
            (serde_json::json!({"name": "b", "plan": "Gold"}), "plan:"),
            (
                serde_json::json!({"name": "b", "per_month": 0}),
                "per_month:",
            ),
        ] {
            let error = create(body.clone()).unwrap_err();
            assert!(error.starts_with(field), "{body}: {error}");
        }
        let changes = validate_team_changes(
            serde_json::from_value(serde_json::json!({"plan": null, "per_day": 9})).unwrap(),
        )
        .unwrap();
        assert_eq!(changes.plan, Some(None));
        assert_eq!(changes.per_day, Some(Some(9)));
        assert_eq!(changes.per_month, None);
        assert!(
            serde_json::from_value::<UpdateTeamRequest>(serde_json::json!({"name": "x"})).is_err()
        );
    }
}
