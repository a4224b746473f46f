//! `GET /v1/session`: who the presented token is, so a client (the web console) offers only
//! what its role and team allow. The API checks every call regardless.

use crate::api::access::Caller;
use crate::api::access::{shared_rule, AdminRoute};
use crate::domain::tokens::Role;
use axum::routing::get;
use axum::Json;
use serde::Serialize;

/// The routes of this resource: each with its access rule and its handler, declared once.
pub const ROUTES: &[AdminRoute] = &[AdminRoute {
    rule: shared_rule("GET", "/v1/session", Role::Viewer, 200),
    handler: || get(show_session),
}];

/// The answer of `GET /v1/session`; never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub token_id: String,
    pub token_name: String,
    pub role: Role,
    /// The team the token is confined to, or null.
    pub team: Option<String>,
}

pub async fn show_session(caller: Caller) -> Json<Session> {
    Json(Session {
        token_id: caller.actor.token_id,
        token_name: caller.actor.token_name,
        role: caller.role,
        team: caller.actor.team,
    })
}
