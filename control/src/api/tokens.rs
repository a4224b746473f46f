//! The admin endpoints under `/v1/tokens`: management tokens with a role and maybe a team.
//! A team token manages only its team's tokens, and the tokens it creates get its team.

use crate::api::access::Caller;
use crate::api::access::{rule, AdminRoute};
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, KeyIdParam, OptionalJsonBody};
use crate::api::state::AppState;
use crate::app::error::LifecycleError;
use crate::app::tokens;
use crate::domain::clock;
use crate::domain::tokens::Role;
use crate::wire::validate::{self, CreateTokenRequest, RotateKeyRequest, Rules};
use crate::wire::views::{TokenList, TokenView};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Json;

/// The routes of this resource: each with its access rule and its handler, declared once.
pub const ROUTES: &[AdminRoute] = &[
    AdminRoute {
        rule: rule("GET", "/v1/tokens", Role::Admin, 200),
        handler: || get(list_tokens),
    },
    AdminRoute {
        rule: rule("POST", "/v1/tokens", Role::Admin, 201),
        handler: || post(create_token),
    },
    AdminRoute {
        rule: rule("DELETE", "/v1/tokens/{id}", Role::Admin, 204),
        handler: || delete(revoke_token),
    },
    AdminRoute {
        rule: rule("POST", "/v1/tokens/{id}/rotate", Role::Admin, 201),
        handler: || post(rotate_token),
    },
];

fn not_found(error: LifecycleError) -> ApiError {
    match error {
        LifecycleError::NotFound => ApiError::NotFound("no such token".into()),
        other => ApiError::from(other),
    }
}

pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateTokenRequest>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let now = clock::now();
    let rules = Rules {
        allowed_scopes: &state.allowed_scopes,
        now,
    };
    let mut settings = rules.create_token(request)?;
    caller.may_name_team(settings.team.as_deref(), "tokens")?;
    if let Some(own) = caller.team() {
        settings.team = Some(own.to_string());
    }
    let minted = state
        .blocking(move |store| tokens::create(store, &caller.actor, &settings, now))
        .await?;
    Ok((StatusCode::CREATED, Json(TokenView::from(minted))))
}

pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TokenList>, ApiError> {
    let found = state
        .blocking(move |store| tokens::list(store, &caller.actor))
        .await?;
    Ok(Json(TokenList {
        tokens: found.into_iter().map(TokenView::from).collect(),
    }))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
) -> Result<StatusCode, ApiError> {
    let now = clock::now();
    state
        .blocking(move |store| tokens::revoke(store, &caller.actor, &id, now).map_err(not_found))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rotate_token(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
    OptionalJsonBody(request): OptionalJsonBody<RotateKeyRequest>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let grace_seconds = validate::grace_seconds(&request)?;
    let now = clock::now();
    let minted = state
        .blocking(move |store| {
            tokens::rotate(store, &caller.actor, &id, grace_seconds, now).map_err(not_found)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(TokenView::from(minted))))
}
