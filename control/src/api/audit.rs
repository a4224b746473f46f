//! `GET /v1/audit`: the audit log, oldest first; a team token reads its team's entries only.

use crate::api::access::Caller;
use crate::api::access::{rule, AdminRoute};
use crate::api::error::ApiError;
use crate::api::extract::QueryParams;
use crate::api::state::AppState;
use crate::app;
use crate::domain::audit::AuditFilter;
use crate::domain::clock;
use crate::domain::tokens::Role;
use crate::wire::views::AuditPage;
use axum::extract::State;
use axum::routing::get;
use axum::Json;
use serde::Deserialize;

/// The routes of this resource: each with its access rule and its handler, declared once.
pub const ROUTES: &[AdminRoute] = &[AdminRoute {
    rule: rule("GET", "/v1/audit", Role::Admin, 200),
    handler: || get(list_audit),
}];

const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    target: Option<String>,
    from: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "limit: must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    let from = query
        .from
        .map(|text| {
            clock::parse(&text).map(clock::format).ok_or_else(|| {
                ApiError::Validation(format!(
                    "from: {text:?} is not an RFC 3339 instant such as 2030-01-01T00:00:00Z"
                ))
            })
        })
        .transpose()?;
    let after = match query.cursor {
        None => 0,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|seq| *seq > 0)
            .ok_or_else(|| {
                ApiError::Validation("cursor: not a cursor this service issued".into())
            })?,
    };
    let filter = AuditFilter {
        target: query.target,
        from,
        team: caller.actor.team,
        after,
    };
    let (entries, more) = state
        .blocking(move |store| app::audit::list(store, &filter, limit))
        .await?;
    let next_cursor = match entries.last() {
        Some(last) if more => Some(last.id.to_string()),
        _ => None,
    };
    Ok(Json(AuditPage {
        entries,
        next_cursor,
    }))
}
