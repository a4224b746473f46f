//! `POST /v1/usage` (proxies report what they counted), `GET /v1/keys/{id}/usage` and
//! `GET /v1/usage` (admins read it back, for one key or summed over a team's keys), and
//! `GET /v1/keys/{id}/events` (a key's recent denials and failed upstream answers).

use crate::api::access::Caller;
use crate::api::access::{rule, AdminRoute};
use crate::api::auth::SyncAuth;
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, KeyIdParam, QueryParams, MAX_PROXY_BODY_BYTES};
use crate::api::state::AppState;
use crate::app::error::LifecycleError;
use crate::app::proxies::presence::Outcome;
use crate::app::usage;
use crate::app::usage_queue::GroupFailure;
use crate::domain::clock;
use crate::domain::events::{self, EventQuery};
use crate::domain::headroom;
use crate::domain::plans::{effective_limits, effective_quotas};
use crate::domain::plausibility::RefusedEntry;
use crate::domain::quota::mark_in_force;
use crate::domain::tokens::Role;
use crate::domain::usage_range::{self, UsageQuery};
use crate::domain::usage_report::{self, UsageRequest};
use crate::domain::usage_report::{BatchOutcome, UsageBatch};
use crate::wire::views::{EventView, KeyEvents, KeyLimits, KeyUsage, TeamUsage};
use axum::extract::State;
use axum::routing::get;
use axum::Json;
use keygate_contract::fleet::key_tag_of_hash;
use serde::{Deserialize, Serialize};

/// The routes of this resource: each with its access rule and its handler, declared once.
pub const ROUTES: &[AdminRoute] = &[
    AdminRoute {
        rule: rule("GET", "/v1/keys/{id}/usage", Role::Viewer, 200),
        handler: || get(key_usage),
    },
    AdminRoute {
        rule: rule("GET", "/v1/usage", Role::Viewer, 200),
        handler: || get(team_usage),
    },
    AdminRoute {
        rule: rule("GET", "/v1/keys/{id}/events", Role::Viewer, 200),
        handler: || get(key_events),
    },
    AdminRoute {
        rule: rule("GET", "/v1/keys/{id}/limits", Role::Viewer, 200),
        handler: || get(key_limits),
    },
];

#[derive(Debug, Serialize)]
pub struct UsageAccepted {
    accepted: u32,
    unknown_keys: u32,
    duplicate: bool,
    /// Entries not counted as implausible, each with why; the rest of the batch was counted.
    /// Left out when there are none, so answers stay as they were.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    refused: Vec<RefusedEntry>,
}

impl From<BatchOutcome> for UsageAccepted {
    fn from(outcome: BatchOutcome) -> Self {
        UsageAccepted {
            accepted: outcome.accepted,
            unknown_keys: outcome.unknown_keys,
            duplicate: outcome.duplicate,
            refused: outcome.refused,
        }
    }
}

pub async fn record_usage(
    State(state): State<AppState>,
    SyncAuth(caller): SyncAuth,
    JsonBody(request): JsonBody<UsageRequest, MAX_PROXY_BODY_BYTES>,
) -> Result<Json<UsageAccepted>, ApiError> {
    let now = clock::now();
    let identity = caller.proxy().cloned();
    let validated = usage_report::validate(request, now);
    let Some(identity) = identity else {
        let batch = validated?;
        reserved_proxy_id(&batch.proxy_id)?;
        return count_batch(&state, batch).await;
    };
    let presence = &state.proxies.presence;
    let mut batch =
        validated.inspect_err(|_| presence.report(&identity.id, Outcome::Failed, now))?;
    // Recorded under who it is, not whom it says it is.
    batch.proxy_id = identity.id.clone();
    for event in batch
        .reports
        .iter_mut()
        .flat_map(|report| &mut report.events)
    {
        event.proxy_id = identity.id.clone();
    }
    batch.reporter = Some(identity.id.clone());
    let counted = count_batch(&state, batch).await;
    let outcome = if counted.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    presence.report(&identity.id, outcome, now);
    counted
}

/// With the shared token a proxy says who it is, but never that it is an identity: events under
/// `prx_…` must come from that proxy's credential.
pub fn reserved_proxy_id(declared: &str) -> Result<(), ApiError> {
    if declared.starts_with("prx_") {
        return Err(ApiError::Validation(
            "proxy_id: prx_… names a proxy identity; present its credential instead of the shared sync token".into(),
        ));
    }
    Ok(())
}

async fn count_batch(state: &AppState, batch: UsageBatch) -> Result<Json<UsageAccepted>, ApiError> {
    let outcome = state
        .usage_queue
        .record(&state.store, batch)
        .await
        .map_err(|failure| match failure {
            GroupFailure::Unavailable(message) => ApiError::Unavailable(message),
            GroupFailure::Failed(message) => ApiError::Internal(message),
            GroupFailure::Revoked => ApiError::Unauthorized,
        })?;
    Ok(Json(UsageAccepted::from(outcome)))
}

/// Usage stays readable after the key is deleted; only an id never issued is 404.
pub async fn key_usage(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
    QueryParams(query): QueryParams<UsageQuery>,
) -> Result<Json<KeyUsage>, ApiError> {
    let range = usage_range::validate(&query, clock::now())?;
    let (first_hour, end) = range.hour_starts();
    let key_id = id.clone();
    let (rows, sketches) = state
        .blocking(move |store| usage::key_hours(store, &caller.actor, &key_id, first_hour, end))
        .await?;
    let summary = usage_range::summarize(&rows, &sketches, range.granularity);
    Ok(Json(KeyUsage {
        key_id: id,
        granularity: range.granularity,
        from: clock::format(range.from),
        to: clock::format(range.to),
        buckets: summary.buckets,
        totals: summary.totals,
    }))
}

/// A key's events, newest first; readable after the key is deleted, like its usage.
pub async fn key_events(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
    QueryParams(query): QueryParams<EventQuery>,
) -> Result<Json<KeyEvents>, ApiError> {
    let range = events::validate(&query)?;
    let key_id = id.clone();
    let found = state
        .blocking(move |store| usage::key_events(store, &caller.actor, &key_id, &range))
        .await?;
    Ok(Json(KeyEvents {
        key_id: id,
        events: found.into_iter().map(EventView::from).collect(),
    }))
}

/// Headroom: every limit of the key in force and what is used of it now, across the fleet.
pub async fn key_limits(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
) -> Result<Json<KeyLimits>, ApiError> {
    let now = clock::now();
    let key_id = id.clone();
    let fleet = state.fleet.clone();
    let read = state
        .blocking(move |store| {
            let (key, quota_use) = usage::key_with_quota_use(store, &caller.actor, &key_id, now)?;
            let buckets = match key_tag_of_hash(&key.hash) {
                Some(tag) => fleet.buckets_of(store, &tag)?,
                None => Vec::new(),
            };
            let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
            let windows = headroom::window_use(&buckets, now_ms);
            let enforced = effective_limits(&key.plan_limits, &key.limits);
            let quotas = effective_quotas(&key.plan_limits, &key.limits);
            Ok::<_, LifecycleError>(KeyLimits {
                key_id,
                at: clock::format(now),
                limits: headroom::limits_in_force(&enforced, quotas, quota_use, windows, now),
                concurrent: enforced.concurrent,
                quota_exceeded_until: mark_in_force(key.quota_exceeded_until, now)
                    .map(clock::format),
            })
        })
        .await?;
    Ok(Json(read))
}

/// Query of the team usage read: the range and granularity of the key usage read, and a team.
#[derive(Debug, Default, Deserialize)]
pub struct TeamUsageQuery {
    pub team: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub granularity: Option<String>,
}

/// The usage of every key of a team (deleted keys included), or of every key when no team is
/// given, which only an unconfined admin may ask. A team token reads its own team's.
pub async fn team_usage(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<TeamUsageQuery>,
) -> Result<Json<TeamUsage>, ApiError> {
    let team = match (caller.team(), query.team) {
        (Some(own), Some(asked)) if own != asked => {
            return Err(ApiError::Forbidden(format!(
                "team: this token belongs to team {own:?} and can only read that team's usage"
            )))
        }
        (Some(own), _) => Some(own.to_string()),
        (None, asked) => asked,
    };
    if team.is_none() && caller.role != Role::Admin {
        return Err(ApiError::Forbidden(
            "usage across every team needs the admin role; ask for one team with team=".into(),
        ));
    }
    let range = usage_range::validate(
        &UsageQuery {
            from: query.from,
            to: query.to,
            granularity: query.granularity,
        },
        clock::now(),
    )?;
    let (first_hour, end) = range.hour_starts();
    let asked = team.clone();
    let (rows, sketches) = state
        .blocking(move |store| usage::team_hours(store, asked.as_deref(), first_hour, end))
        .await?;
    let summary = usage_range::summarize(&rows, &sketches, range.granularity);
    Ok(Json(TeamUsage {
        team,
        granularity: range.granularity,
        from: clock::format(range.from),
        to: clock::format(range.to),
        buckets: summary.buckets,
        totals: summary.totals,
    }))
}
