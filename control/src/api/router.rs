//! Every route of the service, and the fallbacks that keep unknown routes in our JSON shape.

use crate::api::error::{method_not_allowed, route_not_found};
use crate::api::keys::{create_key, delete_key, list_keys, rotate_key, show_key, update_key};
use crate::api::snapshot::{held_polls, snapshot};
use crate::api::state::AppState;
use crate::api::usage::{key_usage, record_usage, MAX_USAGE_BODY_BYTES};
use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

/// Larger request bodies are refused with 413 (`/v1/usage` allows more).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI document, kept beside the code as `control/openapi.json`.
const OPENAPI_JSON: &str = include_str!("../../openapi.json");

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route(
            "/v1/keys/{id}",
            get(show_key).patch(update_key).delete(delete_key),
        )
        .route("/v1/keys/{id}/rotate", post(rotate_key))
        .route("/v1/keys/{id}/usage", get(key_usage))
        .route("/v1/snapshot", get(snapshot))
        .route("/v1/snapshot/polls", get(held_polls))
        // The route's own limit is applied after (inside) the router-wide one, so it wins.
        .route(
            "/v1/usage",
            post(record_usage).layer(DefaultBodyLimit::max(MAX_USAGE_BODY_BYTES)),
        )
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_is_valid_json() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    }
}
