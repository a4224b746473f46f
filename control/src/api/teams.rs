//! The admin endpoints under `/v1/teams`: teams with their plan, shared quotas, keys, tokens and
//! use. A team token sees only its own team and cannot create, change or delete teams: a team's
//! plan and quotas are what it bought, set by the operator.

use crate::api::access::Caller;
use crate::api::access::{rule, AdminRoute};
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, KeyIdParam};
use crate::api::state::AppState;
use crate::app::teams::{self, TeamError};
use crate::domain::clock;
use crate::domain::tokens::Role;
use crate::wire::teams::{
    validate_new_team, validate_team_changes, CreateTeamRequest, TeamList, TeamView,
    UpdateTeamRequest,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use axum::Json;

/// The routes of this resource: each with its access rule and its handler, declared once.
pub const ROUTES: &[AdminRoute] = &[
    AdminRoute {
        rule: rule("GET", "/v1/teams", Role::Viewer, 200),
        handler: || get(list_teams),
    },
    AdminRoute {
        rule: rule("POST", "/v1/teams", Role::Admin, 201),
        handler: || post(create_team),
    },
    AdminRoute {
        rule: rule("GET", "/v1/teams/{name}", Role::Viewer, 200),
        handler: || get(show_team),
    },
    AdminRoute {
        rule: rule("PATCH", "/v1/teams/{name}", Role::Admin, 200),
        handler: || patch(update_team),
    },
    AdminRoute {
        rule: rule("DELETE", "/v1/teams/{name}", Role::Admin, 204),
        handler: || delete(delete_team),
    },
];

impl From<TeamError> for ApiError {
    fn from(error: TeamError) -> Self {
        match error {
            TeamError::NotFound => ApiError::NotFound("no such team".into()),
            TeamError::Exists => ApiError::Conflict(error.to_string()),
            TeamError::InUse { .. } => ApiError::Conflict(error.to_string()),
            TeamError::Invalid(error) => ApiError::from(error),
            TeamError::Database(error) => ApiError::from(error),
        }
    }
}

/// Teams' plans and quotas are the operator's to set: a team token may read its team only.
fn operator_only(caller: &Caller) -> Result<(), ApiError> {
    match caller.team() {
        Some(own) => Err(ApiError::Forbidden(format!(
            "this token belongs to team {own:?}; only a token of no team may create, change or \
             delete teams"
        ))),
        None => Ok(()),
    }
}

pub async fn list_teams(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TeamList>, ApiError> {
    let now = clock::now();
    let found = state
        .blocking(move |store| teams::list(store, &caller.actor, now))
        .await?;
    Ok(Json(TeamList {
        teams: found
            .into_iter()
            .map(|detail| TeamView::of(detail, false, now))
            .collect(),
    }))
}

pub async fn show_team(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(name): KeyIdParam,
) -> Result<Json<TeamView>, ApiError> {
    let now = clock::now();
    let sees_tokens = caller.role >= Role::Admin;
    let detail = state
        .blocking(move |store| teams::show(store, &caller.actor, &name, now))
        .await?;
    let mut view = TeamView::of(detail, true, now);
    if !sees_tokens {
        // Tokens are listed to admins only (as GET /v1/tokens is).
        view.tokens = None;
    }
    Ok(Json(view))
}

pub async fn create_team(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateTeamRequest>,
) -> Result<(StatusCode, Json<TeamView>), ApiError> {
    operator_only(&caller)?;
    let now = clock::now();
    let team = validate_new_team(request, now)?;
    let detail = state
        .blocking(move |store| teams::create(store, &caller.actor, &team, now))
        .await?;
    Ok((StatusCode::CREATED, Json(TeamView::of(detail, true, now))))
}

pub async fn update_team(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(name): KeyIdParam,
    JsonBody(request): JsonBody<UpdateTeamRequest>,
) -> Result<Json<TeamView>, ApiError> {
    operator_only(&caller)?;
    let changes = validate_team_changes(request)?;
    let now = clock::now();
    let settings = state.alerts;
    let detail = state
        .blocking(move |store| teams::update(store, &caller.actor, &name, &changes, now, &settings))
        .await?;
    Ok(Json(TeamView::of(detail, true, now)))
}

pub async fn delete_team(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(name): KeyIdParam,
) -> Result<StatusCode, ApiError> {
    operator_only(&caller)?;
    let now = clock::now();
    state
        .blocking(move |store| teams::delete(store, &caller.actor, &name, now))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
