//! The admin endpoints under `/v1/keys`. A team token sees and manages only its team's keys.

use crate::api::access::Caller;
use crate::api::access::{rule, AdminRoute};
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, KeyIdParam, OptionalJsonBody, QueryParams};
use crate::api::leaks;
use crate::api::state::AppState;
use crate::app;
use crate::app::error::LifecycleError;
use crate::domain::clock;
use crate::domain::cursor::{self, Position};
use crate::domain::keys::KeyFilter;
use crate::domain::keys::KeyStatus;
use crate::domain::plans::Environment;
use crate::domain::tokens::Role;
use crate::wire::validate::{self, CreateKeyRequest, RotateKeyRequest, Rules, UpdateKeyRequest};
use crate::wire::views::KeyList;
use crate::wire::views::KeyView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use axum::Json;
use serde::Deserialize;

/// The routes of this resource: each with its access rule and its handler, declared once.
pub const ROUTES: &[AdminRoute] = &[
    AdminRoute {
        rule: rule("GET", "/v1/keys", Role::Viewer, 200),
        handler: || get(list_keys),
    },
    AdminRoute {
        rule: rule("POST", "/v1/keys", Role::Editor, 201),
        handler: || post(create_key),
    },
    AdminRoute {
        rule: rule("GET", "/v1/keys/{id}", Role::Viewer, 200),
        handler: || get(show_key),
    },
    AdminRoute {
        rule: rule("PATCH", "/v1/keys/{id}", Role::Editor, 200),
        handler: || patch(update_key),
    },
    AdminRoute {
        rule: rule("DELETE", "/v1/keys/{id}", Role::Editor, 204),
        handler: || delete(delete_key),
    },
    AdminRoute {
        rule: rule("POST", "/v1/keys/{id}/rotate", Role::Editor, 201),
        handler: || post(rotate_key),
    },
    AdminRoute {
        rule: rule("POST", "/v1/keys/leaked", Role::Editor, 200),
        handler: || post(leaks::report_leaked_key),
    },
];

const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;

pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateKeyRequest>,
) -> Result<(StatusCode, Json<KeyView>), ApiError> {
    let now = clock::now();
    let rules = Rules {
        allowed_scopes: &state.allowed_scopes,
        now,
    };
    let mut settings = rules.create(request)?;
    caller.may_name_team(
        Some(settings.team.as_str()).filter(|t| !t.is_empty()),
        "keys",
    )?;
    if let Some(own) = caller.team() {
        settings.team = own.to_string();
    }
    let minted = state
        .blocking(move |store| app::keys::create(store, &caller.actor, &settings, now))
        .await?;
    Ok((StatusCode::CREATED, Json(KeyView::from(minted))))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    team: Option<String>,
    environment: Option<String>,
    active: Option<bool>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<KeyList>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "limit: must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    let after = decode_cursor(query.cursor.as_deref())?;
    let environment = query
        .environment
        .map(|name| {
            Environment::parse(&name).ok_or_else(|| {
                ApiError::Validation(format!("environment: must be live or test, not {name:?}"))
            })
        })
        .transpose()?;
    let status = query
        .status
        .map(|name| {
            KeyStatus::parse(&name).ok_or_else(|| {
                ApiError::Validation(format!(
                    "status: must be active, inactive or expired, not {name:?}"
                ))
            })
        })
        .transpose()?;
    if let (Some(own), Some(asked)) = (caller.team(), query.team.as_deref()) {
        if own != asked {
            return Ok(Json(KeyList {
                keys: Vec::new(),
                next_cursor: None,
            }));
        }
    }
    let filter = KeyFilter {
        team: caller.team().map(String::from).or(query.team),
        environment,
        active: query.active,
        status,
        now: Some(clock::now()),
    };
    let page = state
        .blocking(move |store| app::keys::list(store, &filter, after, limit))
        .await?;
    Ok(Json(KeyList {
        keys: page.rows.into_iter().map(KeyView::from).collect(),
        next_cursor: page.next_after.map(cursor::encode),
    }))
}

/// The position a page starts after; the start for the first page.
fn decode_cursor(text: Option<&str>) -> Result<Position, ApiError> {
    match text {
        None => Ok(Position::default()),
        Some(text) => cursor::decode(text)
            .ok_or_else(|| ApiError::Validation("cursor: not a cursor this service issued".into())),
    }
}

pub async fn show_key(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
) -> Result<Json<KeyView>, ApiError> {
    let key = state
        .blocking(
            move |store| match app::keys::show(store, &caller.actor, &id) {
                Err(LifecycleError::Deleted) => Err(LifecycleError::NotFound),
                other => other,
            },
        )
        .await?;
    Ok(Json(KeyView::from(key)))
}

pub async fn update_key(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
    JsonBody(request): JsonBody<UpdateKeyRequest>,
) -> Result<Json<KeyView>, ApiError> {
    let now = clock::now();
    let rules = Rules {
        allowed_scopes: &state.allowed_scopes,
        now,
    };
    let changes = rules.update(request)?;
    caller.may_name_team(changes.team.as_deref(), "keys")?;
    let key = state
        .blocking(move |store| app::keys::update(store, &caller.actor, &id, changes, now))
        .await?;
    Ok(Json(KeyView::from(key)))
}

pub async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
) -> Result<StatusCode, ApiError> {
    let now = clock::now();
    state
        .blocking(move |store| app::keys::delete(store, &caller.actor, &id, now))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rotate_key(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
    OptionalJsonBody(request): OptionalJsonBody<RotateKeyRequest>,
) -> Result<(StatusCode, Json<KeyView>), ApiError> {
    let grace_seconds = validate::grace_seconds(&request)?;
    let now = clock::now();
    let minted = state
        .blocking(move |store| app::keys::rotate(store, &caller.actor, &id, grace_seconds, now))
        .await?;
    Ok((StatusCode::CREATED, Json(KeyView::from(minted))))
}
