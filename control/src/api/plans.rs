//! The admin endpoints under `/v1/plans`: the plans keys are on, with their default limits.
//! Plans are shared by every team.

use crate::api::access::Caller;
use crate::api::access::{shared_rule, AdminRoute};
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, KeyIdParam};
use crate::api::state::AppState;
use crate::app::plans::{self, PlanError};
use crate::domain::clock;
use crate::domain::plans::PlanDefinition;
use crate::domain::tokens::Role;
use crate::wire::plans::{
    validate_new_plan, validate_plan_changes, CreatePlanRequest, UpdatePlanRequest,
};
use crate::wire::views::PlanList;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use axum::Json;

/// The routes of this resource: each with its access rule and its handler, declared once.
pub const ROUTES: &[AdminRoute] = &[
    AdminRoute {
        rule: shared_rule("GET", "/v1/plans", Role::Viewer, 200),
        handler: || get(list_plans),
    },
    AdminRoute {
        rule: shared_rule("POST", "/v1/plans", Role::Admin, 201),
        handler: || post(create_plan),
    },
    AdminRoute {
        rule: shared_rule("GET", "/v1/plans/{name}", Role::Viewer, 200),
        handler: || get(show_plan),
    },
    AdminRoute {
        rule: shared_rule("PATCH", "/v1/plans/{name}", Role::Admin, 200),
        handler: || patch(update_plan),
    },
    AdminRoute {
        rule: shared_rule("DELETE", "/v1/plans/{name}", Role::Admin, 204),
        handler: || delete(delete_plan),
    },
];

impl From<PlanError> for ApiError {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::NotFound => ApiError::NotFound("no such plan".into()),
            PlanError::Exists => ApiError::Conflict("a plan of that name exists".into()),
            PlanError::InUse(_) | PlanError::TeamsOnPlan(_) => {
                ApiError::Conflict(error.to_string())
            }
            PlanError::Database(error) => ApiError::from(error),
        }
    }
}

pub async fn list_plans(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<PlanList>, ApiError> {
    let plans = state
        .blocking(|store| plans::list(store).map_err(ApiError::from))
        .await?;
    Ok(Json(PlanList { plans }))
}

pub async fn show_plan(
    State(state): State<AppState>,
    _caller: Caller,
    KeyIdParam(name): KeyIdParam,
) -> Result<Json<PlanDefinition>, ApiError> {
    let plan = state
        .blocking(move |store| plans::show(store, &name).map_err(ApiError::from))
        .await?
        .ok_or_else(|| ApiError::NotFound("no such plan".into()))?;
    Ok(Json(plan))
}

pub async fn create_plan(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreatePlanRequest>,
) -> Result<(StatusCode, Json<PlanDefinition>), ApiError> {
    let plan = validate_new_plan(request)?;
    let now = clock::now();
    let created = plan.clone();
    state
        .blocking(move |store| {
            plans::create(store, &caller.actor, &created, now).map_err(ApiError::from)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

pub async fn update_plan(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(name): KeyIdParam,
    JsonBody(request): JsonBody<UpdatePlanRequest>,
) -> Result<Json<PlanDefinition>, ApiError> {
    let changes = validate_plan_changes(request)?;
    let now = clock::now();
    let settings = state.alerts;
    let plan = state
        .blocking(move |store| {
            plans::update(store, &caller.actor, &name, &changes, now, &settings)
                .map_err(ApiError::from)
        })
        .await?;
    Ok(Json(plan))
}

pub async fn delete_plan(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(name): KeyIdParam,
) -> Result<StatusCode, ApiError> {
    let now = clock::now();
    state
        .blocking(move |store| {
            plans::delete(store, &caller.actor, &name, now).map_err(ApiError::from)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
