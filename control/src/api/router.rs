//! Every route of the service, and the fallbacks that keep unknown routes in our JSON shape.

use crate::api::access::{RouteRule, ADMIN_ROUTES};
use crate::api::audit::list_audit;
use crate::api::error::{method_not_allowed, route_not_found};
use crate::api::fleet::{sync_fleet, MAX_SYNC_BODY_BYTES};
use crate::api::keys::{create_key, delete_key, list_keys, rotate_key, show_key, update_key};
use crate::api::plans::{create_plan, delete_plan, list_plans, show_plan, update_plan};
use crate::api::scopes::list_scopes;
use crate::api::session::show_session;
use crate::api::snapshot::{held_polls, snapshot};
use crate::api::state::AppState;
use crate::api::tokens::{create_token, list_tokens, revoke_token, rotate_token};
use crate::api::usage::{key_usage, record_usage, team_usage, MAX_USAGE_BODY_BYTES};
use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::{Json, Router};
use serde_json::json;

/// Larger request bodies are refused with 413 (`/v1/usage` allows more).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI document, kept beside the code as `control/openapi.json`.
const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// The handler of an admin route. Admin routes are added only from `ADMIN_ROUTES`, so none
/// exists without an access rule; a rule without a handler fails the tests.
fn admin_handler(rule: &RouteRule) -> Option<MethodRouter<AppState>> {
    let handler = match (rule.method, rule.path) {
        ("GET", "/v1/keys") => get(list_keys),
        ("POST", "/v1/keys") => post(create_key),
        ("GET", "/v1/keys/{id}") => get(show_key),
        ("PATCH", "/v1/keys/{id}") => patch(update_key),
        ("DELETE", "/v1/keys/{id}") => delete(delete_key),
        ("POST", "/v1/keys/{id}/rotate") => post(rotate_key),
        ("GET", "/v1/keys/{id}/usage") => get(key_usage),
        ("GET", "/v1/usage") => get(team_usage),
        ("GET", "/v1/tokens") => get(list_tokens),
        ("POST", "/v1/tokens") => post(create_token),
        ("DELETE", "/v1/tokens/{id}") => delete(revoke_token),
        ("POST", "/v1/tokens/{id}/rotate") => post(rotate_token),
        ("GET", "/v1/audit") => get(list_audit),
        ("GET", "/v1/plans") => get(list_plans),
        ("POST", "/v1/plans") => post(create_plan),
        ("GET", "/v1/plans/{name}") => get(show_plan),
        ("PATCH", "/v1/plans/{name}") => patch(update_plan),
        ("DELETE", "/v1/plans/{name}") => delete(delete_plan),
        ("GET", "/v1/scopes") => get(list_scopes),
        ("GET", "/v1/session") => get(show_session),
        _ => return None,
    };
    Some(handler)
}

pub fn router(state: AppState) -> Router {
    let mut routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi));
    for rule in ADMIN_ROUTES {
        if let Some(handler) = admin_handler(rule) {
            routes = routes.route(rule.path, handler);
        }
    }
    routes
        .route("/v1/snapshot", get(snapshot))
        .route("/v1/snapshot/polls", get(held_polls))
        // The route's own limit is applied after (inside) the router-wide one, so it wins.
        .route(
            "/v1/usage",
            post(record_usage).layer(DefaultBodyLimit::max(MAX_USAGE_BODY_BYTES)),
        )
        .route(
            "/v1/ratelimits/sync",
            post(sync_fleet).layer(DefaultBodyLimit::max(MAX_SYNC_BODY_BYTES)),
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

    #[test]
    fn every_access_rule_has_a_handler() {
        for rule in ADMIN_ROUTES {
            assert!(admin_handler(rule).is_some(), "no handler for {rule:?}");
        }
    }

    /// Every admin operation the OpenAPI document lists has an access rule, and every rule is
    /// documented: a route cannot be added to one without the other.
    #[test]
    fn openapi_admin_operations_match_the_access_table() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        let public_or_sync = [
            ("GET", "/healthz"),
            ("GET", "/openapi.json"),
            ("GET", "/v1/snapshot"),
            ("GET", "/v1/snapshot/polls"),
            ("POST", "/v1/usage"),
            ("POST", "/v1/ratelimits/sync"),
        ];
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let method = method.to_ascii_uppercase();
                if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str())
                    && !public_or_sync.contains(&(method.as_str(), path.as_str()))
                {
                    documented.push((method, path.clone()));
                }
            }
        }
        documented.sort();
        let mut ruled: Vec<(String, String)> = ADMIN_ROUTES
            .iter()
            .map(|rule| (rule.method.to_string(), rule.path.to_string()))
            .collect();
        ruled.sort();
        assert_eq!(documented, ruled);
    }
}
