//! Every route of the service, and the fallbacks that keep unknown routes in our JSON shape.

use crate::api::access::AdminRoute;
use crate::api::error::{method_not_allowed, route_not_found};
use crate::api::extract::{MAX_BODY_BYTES, MAX_PROXY_BODY_BYTES};
use crate::api::fleet::sync_fleet;
use crate::api::leaks::{self, MAX_SCANNING_BODY_BYTES};
use crate::api::metrics::metrics;
use crate::api::snapshot::{held_polls, snapshot};
use crate::api::state::AppState;
use crate::api::usage::record_usage;
use crate::api::{
    audit, keys, oauth, plans, proxies, scopes, session, teams, tokens, usage, webhooks,
};
use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use keygate_contract::enrollment;
use serde_json::json;

/// The OpenAPI document, kept beside the code as `control/openapi.json`.
const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// Every admin route, resource by resource, in the order `control/access.json` lists them.
const RESOURCES: [&[AdminRoute]; 10] = [
    keys::ROUTES,
    usage::ROUTES,
    tokens::ROUTES,
    audit::ROUTES,
    plans::ROUTES,
    teams::ROUTES,
    webhooks::ROUTES,
    scopes::ROUTES,
    session::ROUTES,
    proxies::ROUTES,
];

/// Every admin route.
pub fn admin_routes() -> impl Iterator<Item = &'static AdminRoute> {
    RESOURCES.into_iter().flatten()
}

pub fn router(state: AppState) -> Router {
    let mut routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics));
    for route in admin_routes() {
        // The rule travels with the request, for `access::Caller` to check.
        routes = routes.route(
            route.rule.path,
            (route.handler)().layer(Extension(route.rule)),
        );
    }
    routes
        .route("/v1/snapshot", get(snapshot))
        .route("/v1/snapshot/polls", get(held_polls))
        // The enrollment token instead of an admin token (docs/security.md, "Proxy identity").
        .route(enrollment::ENROLL_PATH, post(proxies::enroll))
        // The route's own limit is applied after (inside) the router-wide one, so it wins.
        .route(
            "/v1/usage",
            post(record_usage).layer(DefaultBodyLimit::max(MAX_PROXY_BODY_BYTES)),
        )
        // Signed by GitHub instead of an admin token (docs/security.md, "Leaked keys").
        .route(
            "/v1/secret-scanning/github",
            post(leaks::github_report).layer(DefaultBodyLimit::max(MAX_SCANNING_BODY_BYTES)),
        )
        // OAuth 2.0: the client authenticates with its key (docs/security.md, "OAuth 2.0").
        .route("/oauth/token", post(oauth::token))
        .route("/.well-known/jwks.json", get(oauth::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata),
        )
        .route(
            "/v1/ratelimits/sync",
            post(sync_fleet).layer(DefaultBodyLimit::max(MAX_PROXY_BODY_BYTES)),
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
    fn no_route_is_declared_twice() {
        let mut seen = std::collections::HashSet::new();
        for route in admin_routes() {
            assert!(
                seen.insert((route.rule.method, route.rule.path)),
                "{:?} is declared twice",
                route.rule
            );
        }
    }

    /// `control/access.json` is what the pytest suite walks; regenerate it with
    /// `KEYGATE_WRITE_ACCESS_JSON=1 cargo test -p keygate-control access`.
    #[test]
    fn access_json_matches_the_routes() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("access.json");
        let rules: Vec<_> = admin_routes().map(|route| route.rule).collect();
        let expected = serde_json::to_string_pretty(&rules).unwrap() + "\n";
        if std::env::var_os("KEYGATE_WRITE_ACCESS_JSON").is_some() {
            std::fs::write(&path, &expected).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            on_disk, expected,
            "control/access.json is stale: run KEYGATE_WRITE_ACCESS_JSON=1 cargo test -p keygate-control access"
        );
    }

    /// Every admin operation the OpenAPI document lists has an access rule, and every rule is
    /// documented: a route cannot be added to one without the other.
    #[test]
    fn openapi_admin_operations_match_the_access_table() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        let public_or_sync = [
            ("GET", "/healthz"),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
            ("GET", "/v1/snapshot"),
            ("GET", "/v1/snapshot/polls"),
            ("POST", "/v1/usage"),
            ("POST", "/v1/ratelimits/sync"),
            ("POST", "/v1/proxies/enroll"),
            ("POST", "/v1/secret-scanning/github"),
            ("POST", "/oauth/token"),
            ("GET", "/.well-known/jwks.json"),
            ("GET", "/.well-known/oauth-authorization-server"),
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
        let mut ruled: Vec<(String, String)> = admin_routes()
            .map(|route| (route.rule.method.to_string(), route.rule.path.to_string()))
            .collect();
        ruled.sort();
        assert_eq!(documented, ruled);
    }
}
