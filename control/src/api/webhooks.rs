//! The admin endpoints under `/v1/webhooks`: endpoints that receive alerts, signed as the
//! Standard Webhooks specification says. A team token manages only its team's endpoints, and
//! those it creates receive only its team's events.

use crate::api::access::Caller;
use crate::api::access::{rule, AdminRoute};
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, KeyIdParam, OptionalJsonBody, QueryParams};
use crate::api::state::AppState;
use crate::app::webhook_dns::check_resolves;
use crate::app::webhooks::{self, WebhookError};
use crate::domain::clock;
use crate::domain::tokens::Role;
use crate::domain::webhooks::{DEFAULT_SECRET_GRACE_SECONDS, MAX_SECRET_GRACE_SECONDS};
use crate::wire::webhooks::{
    validate_new_webhook, validate_webhook_changes, CreateWebhookRequest, DeliveryList,
    DeliveryView, RotateSecretRequest, TestQueued, UpdateWebhookRequest, WebhookList, WebhookView,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use axum::Json;
use keygate_contract::FieldError;
use serde::Deserialize;

/// The routes of this resource: each with its access rule and its handler, declared once.
pub const ROUTES: &[AdminRoute] = &[
    AdminRoute {
        rule: rule("GET", "/v1/webhooks", Role::Viewer, 200),
        handler: || get(list_webhooks),
    },
    AdminRoute {
        rule: rule("POST", "/v1/webhooks", Role::Admin, 201),
        handler: || post(create_webhook),
    },
    AdminRoute {
        rule: rule("GET", "/v1/webhooks/{id}", Role::Viewer, 200),
        handler: || get(show_webhook),
    },
    AdminRoute {
        rule: rule("PATCH", "/v1/webhooks/{id}", Role::Admin, 200),
        handler: || patch(update_webhook),
    },
    AdminRoute {
        rule: rule("DELETE", "/v1/webhooks/{id}", Role::Admin, 204),
        handler: || delete(delete_webhook),
    },
    AdminRoute {
        rule: rule("POST", "/v1/webhooks/{id}/rotate-secret", Role::Admin, 200),
        handler: || post(rotate_secret),
    },
    AdminRoute {
        rule: rule("POST", "/v1/webhooks/{id}/test", Role::Admin, 202),
        handler: || post(send_test),
    },
    AdminRoute {
        rule: rule("GET", "/v1/webhooks/{id}/deliveries", Role::Viewer, 200),
        handler: || get(list_deliveries),
    },
];

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::NotFound => ApiError::NotFound("no such webhook".into()),
            WebhookError::Disabled => ApiError::Conflict(error.to_string()),
            WebhookError::Database(error) => ApiError::from(error),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Resolves the URL's host off the async workers and refuses it if any address it resolves to
/// is one a webhook must not reach (checked again on every delivery: DNS can change).
async fn check_destination(state: &AppState, url: &str) -> Result<(), ApiError> {
    let (url, policy) = (url.to_string(), state.webhook_policy);
    tokio::task::spawn_blocking(move || check_resolves(&url, policy))
        .await
        .map_err(|error| ApiError::Internal(format!("DNS lookup task failed: {error}")))?
        .map_err(|message| ApiError::from(FieldError::new("url", message)))
}

pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<WebhookView>), ApiError> {
    let mut new = validate_new_webhook(request, state.webhook_policy)?;
    caller.may_name_team(new.team.as_deref(), "webhooks")?;
    if let Some(own) = caller.team() {
        new.team = Some(own.to_string());
    }
    check_destination(&state, &new.url).await?;
    let now = clock::now();
    let webhook = state
        .blocking(move |store| webhooks::create(store, &caller.actor, new, now))
        .await?;
    state.webhook_wake.notify_one();
    Ok((StatusCode::CREATED, Json(WebhookView::of(webhook, true))))
}

pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WebhookList>, ApiError> {
    let found = state
        .blocking(move |store| webhooks::list(store, &caller.actor))
        .await?;
    Ok(Json(WebhookList {
        webhooks: found
            .into_iter()
            .map(|webhook| WebhookView::of(webhook, false))
            .collect(),
    }))
}

pub async fn show_webhook(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
) -> Result<Json<WebhookView>, ApiError> {
    let webhook = state
        .blocking(move |store| webhooks::show(store, &caller.actor, &id))
        .await?;
    Ok(Json(WebhookView::of(webhook, false)))
}

pub async fn update_webhook(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
    JsonBody(request): JsonBody<UpdateWebhookRequest>,
) -> Result<Json<WebhookView>, ApiError> {
    let changes = validate_webhook_changes(request, state.webhook_policy)?;
    if let Some(url) = &changes.url {
        check_destination(&state, url).await?;
    }
    let now = clock::now();
    let webhook = state
        .blocking(move |store| webhooks::update(store, &caller.actor, &id, changes, now))
        .await?;
    Ok(Json(WebhookView::of(webhook, false)))
}

pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
) -> Result<StatusCode, ApiError> {
    let now = clock::now();
    state
        .blocking(move |store| webhooks::delete(store, &caller.actor, &id, now))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
    OptionalJsonBody(request): OptionalJsonBody<RotateSecretRequest>,
) -> Result<Json<WebhookView>, ApiError> {
    let grace = request
        .grace_seconds
        .unwrap_or(DEFAULT_SECRET_GRACE_SECONDS);
    if grace > MAX_SECRET_GRACE_SECONDS {
        let message = format!("must be at most {MAX_SECRET_GRACE_SECONDS} (366 days)");
        return Err(FieldError::new("grace_seconds", message).into());
    }
    let now = clock::now();
    let webhook = state
        .blocking(move |store| webhooks::rotate_secret(store, &caller.actor, &id, grace, now))
        .await?;
    Ok(Json(WebhookView::of(webhook, true)))
}

pub async fn send_test(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
) -> Result<(StatusCode, Json<TestQueued>), ApiError> {
    let now = clock::now();
    let event_id = state
        .blocking(move |store| webhooks::send_test(store, &caller.actor, &id, now))
        .await?;
    state.webhook_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(TestQueued { event_id })))
}

/// Query of the delivery log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Most deliveries one read returns.
pub const MAX_DELIVERIES: usize = 500;

pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
    QueryParams(query): QueryParams<DeliveryQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_DELIVERIES {
        return Err(FieldError::new("limit", format!("must be 1 to {MAX_DELIVERIES}")).into());
    }
    let found = state
        .blocking(move |store| webhooks::deliveries(store, &caller.actor, &id, limit))
        .await?;
    Ok(Json(DeliveryList {
        deliveries: found.into_iter().map(DeliveryView::from).collect(),
    }))
}
