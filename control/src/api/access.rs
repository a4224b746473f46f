//! Who may call which admin route: one rule per (method, route), the minimum role it needs,
//! and whether a team token is confined to its team there. Each resource module declares its
//! routes once, rule and handler together (`ROUTES`, an [`AdminRoute`] each); the router adds
//! every admin route with its rule attached, and [`Caller`] checks the rule of the route that
//! matched, so a route without a rule cannot exist and a request without one is refused (fail
//! closed). `control/access.json` is the rules as data, for the tests that walk them.

use crate::api::auth::bearer_token;
use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::app::tokens;
use crate::domain::audit::Actor;
use crate::domain::clock;
use crate::domain::tokens::{Role, TOKEN_PREFIX};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::MethodRouter;
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

pub const fn rule(method: &'static str, path: &'static str, role: Role, success: u16) -> RouteRule {
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
pub const fn shared_rule(
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

/// An admin route as its resource declares it: the access rule and the handler. A function
/// pointer, so a module's routes are a constant table.
pub struct AdminRoute {
    pub rule: RouteRule,
    pub handler: fn() -> MethodRouter<AppState>,
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
        // The router attaches each admin route's rule to it (`router::admin_routes`).
        let route = parts.extensions.get::<RouteRule>();
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
}
