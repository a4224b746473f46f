//! Who may call which admin route: one rule per (method, route), the minimum role it needs,
//! and whether a team token is confined to its team there. The router adds admin routes only
//! from this table's handlers, and a route without a rule is refused (fail closed).
//! `control/access.json` is this table as data, for the tests that walk it.

use crate::api::auth::bearer_token;
use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::app::tokens;
use crate::domain::audit::Actor;
use crate::domain::clock;
use crate::domain::tokens::{Role, TOKEN_PREFIX};
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use serde::Serialize;

/// The access rule of one admin route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RouteRule {
    pub method: &'static str,
    /// The route pattern as the router names it, e.g. `/v1/keys/{id}`.
    pub path: &'static str,
    /// The least role that may call it.
    pub role: Role,
    /// A team token sees only its team's records here (others answer 404, listings filter).
    pub team_scoped: bool,
    /// The status of a successful call.
    pub success: u16,
}

const fn rule(method: &'static str, path: &'static str, role: Role, success: u16) -> RouteRule {
    RouteRule {
        method,
        path,
        role,
        team_scoped: true,
        success,
    }
}

/// A rule for a route whose records belong to no team (plans): a team token of the role
/// reaches all of them.
const fn shared_rule(
    method: &'static str,
    path: &'static str,
    role: Role,
    success: u16,
) -> RouteRule {
    RouteRule {
        team_scoped: false,
        ..rule(method, path, role, success)
    }
}

/// Every admin route. Viewers read keys and usage; editors also change keys; admins also
/// manage tokens and plans and read the audit log.
pub const ADMIN_ROUTES: &[RouteRule] = &[
    rule("GET", "/v1/keys", Role::Viewer, 200),
    rule("POST", "/v1/keys", Role::Editor, 201),
    rule("GET", "/v1/keys/{id}", Role::Viewer, 200),
    rule("PATCH", "/v1/keys/{id}", Role::Editor, 200),
    rule("DELETE", "/v1/keys/{id}", Role::Editor, 204),
    rule("POST", "/v1/keys/{id}/rotate", Role::Editor, 201),
    rule("GET", "/v1/keys/{id}/usage", Role::Viewer, 200),
    rule("GET", "/v1/usage", Role::Viewer, 200),
    rule("GET", "/v1/tokens", Role::Admin, 200),
    rule("POST", "/v1/tokens", Role::Admin, 201),
    rule("DELETE", "/v1/tokens/{id}", Role::Admin, 204),
    rule("POST", "/v1/tokens/{id}/rotate", Role::Admin, 201),
    rule("GET", "/v1/audit", Role::Admin, 200),
    shared_rule("GET", "/v1/plans", Role::Viewer, 200),
    shared_rule("POST", "/v1/plans", Role::Admin, 201),
    shared_rule("GET", "/v1/plans/{name}", Role::Viewer, 200),
    shared_rule("PATCH", "/v1/plans/{name}", Role::Admin, 200),
    shared_rule("DELETE", "/v1/plans/{name}", Role::Admin, 204),
    shared_rule("GET", "/v1/scopes", Role::Viewer, 200),
    shared_rule("GET", "/v1/session", Role::Viewer, 200),
];

/// The rule for `method` on the route pattern `path`.
pub fn rule_for(method: &str, path: &str) -> Option<&'static RouteRule> {
    ADMIN_ROUTES
        .iter()
        .find(|rule| rule.method == method && rule.path == path)
}

/// An authenticated admin API caller whose role allows the route it called.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub role: Role,
}

impl Caller {
    /// The team the caller is confined to, if any.
    pub fn team(&self) -> Option<&str> {
        self.actor.team.as_deref()
    }

    /// A team token may write only its own team into a record (`records`: what it manages);
    /// any other team is a 400 naming `team`.
    pub fn may_name_team(&self, asked: Option<&str>, records: &str) -> Result<(), ApiError> {
        match (self.team(), asked) {
            (Some(own), Some(asked)) if own != asked => Err(ApiError::Validation(format!(
                "team: this token belongs to team {own:?} and can only manage that team's {records}"
            ))),
            _ => Ok(()),
        }
    }
}

/// 401 for a missing, unknown, revoked or expired token; 403 when its role is below the
/// route's rule, or the route has no rule.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = bearer_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let caller = if state.admin_token.matches(presented) {
            Caller {
                actor: Actor::bootstrap(),
                role: Role::Admin,
            }
        } else if presented.starts_with(TOKEN_PREFIX) {
            let secret = presented.to_string();
            let now = clock::now();
            let token = state
                .blocking(move |store| tokens::authenticate(store, &secret, now))
                .await?
                .ok_or(ApiError::Unauthorized)?;
            Caller {
                actor: token.actor(),
                role: token.role,
            }
        } else {
            return Err(ApiError::Unauthorized);
        };
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .and_then(|path| rule_for(parts.method.as_str(), path.as_str()));
        match route {
            Some(rule) if caller.role >= rule.role => Ok(caller),
            Some(rule) => Err(ApiError::Forbidden(format!(
                "{} {} needs the {} role; this token is {}",
                rule.method,
                rule.path,
                rule.role.as_str(),
                caller.role.as_str()
            ))),
            None => Err(ApiError::Forbidden("no access rule for this route".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Editor && Role::Editor < Role::Admin);
    }

    #[test]
    fn rules_are_unique() {
        for (index, rule) in ADMIN_ROUTES.iter().enumerate() {
            assert_eq!(
                rule_for(rule.method, rule.path),
                Some(&ADMIN_ROUTES[index]),
                "{rule:?} is declared twice"
            );
        }
    }

    /// `control/access.json` is what the pytest suite walks; regenerate it with
    /// `KEYGATE_WRITE_ACCESS_JSON=1 cargo test -p keygate-control access`.
    #[test]
    fn access_json_matches_the_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("access.json");
        let expected = serde_json::to_string_pretty(ADMIN_ROUTES).unwrap() + "\n";
        if std::env::var_os("KEYGATE_WRITE_ACCESS_JSON").is_some() {
            std::fs::write(&path, &expected).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            on_disk, expected,
            "control/access.json is stale: run KEYGATE_WRITE_ACCESS_JSON=1 cargo test -p keygate-control access"
        );
    }
}
