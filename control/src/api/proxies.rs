//! Proxy identity's routes: `POST /v1/proxies/enroll` (a proxy, with the enrollment token),
//! and the admin routes under `/v1/proxies` (the fleet list, issuing and revoking credentials,
//! a proxy's reported usage) and `/v1/enrollment-tokens`. Proxies belong to no team: a team
//! token is refused here whatever its role.

use crate::api::access::{rule, AdminRoute, Caller};
use crate::api::auth::bearer_token;
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, KeyIdParam};
use crate::api::state::AppState;
use crate::app::error::LifecycleError;
use crate::app::proxies::credentials::CREDENTIAL_TTL;
use crate::app::proxies::enroll_limit::CHURN_ENROLLMENTS;
use crate::app::proxies::{self, EnrollError, ProxyRegistry};
use crate::domain::clock;
use crate::domain::proxies::StoredProxy;
use crate::domain::tokens::Role;
use crate::wire::proxies::{
    CreateEnrollmentTokenRequest, EnrollmentTokenList, EnrollmentTokenView, IssueProxyRequest,
    ProxyList, ProxyView, ReportedUsage,
};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::Json;
use keygate_contract::enrollment::{self, EnrollAnswer, EnrollRequest, ENROLLMENT_PREFIX};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub const ROUTES: &[AdminRoute] = &[
    AdminRoute {
        rule: rule("GET", "/v1/proxies", Role::Viewer, 200),
        handler: || get(list_proxies),
    },
    AdminRoute {
        rule: rule("POST", "/v1/proxies", Role::Admin, 201),
        handler: || post(issue_proxy),
    },
    AdminRoute {
        rule: rule("GET", "/v1/proxies/{id}", Role::Viewer, 200),
        handler: || get(get_proxy),
    },
    AdminRoute {
        rule: rule("DELETE", "/v1/proxies/{id}", Role::Admin, 204),
        handler: || delete(revoke_proxy),
    },
    AdminRoute {
        rule: rule("GET", "/v1/proxies/{id}/reports", Role::Viewer, 200),
        handler: || get(proxy_reports),
    },
    AdminRoute {
        rule: rule("DELETE", "/v1/proxies/{id}/reports", Role::Admin, 200),
        handler: || delete(discard_proxy_reports),
    },
    AdminRoute {
        rule: rule("GET", "/v1/enrollment-tokens", Role::Admin, 200),
        handler: || get(list_enrollment_tokens),
    },
    AdminRoute {
        rule: rule("POST", "/v1/enrollment-tokens", Role::Admin, 201),
        handler: || post(create_enrollment_token),
    },
    AdminRoute {
        rule: rule("DELETE", "/v1/enrollment-tokens/{id}", Role::Admin, 204),
        handler: || delete(revoke_enrollment_token),
    },
];

/// Proxies are the operator's: a token of a team is refused.
fn operator(caller: &Caller) -> Result<(), ApiError> {
    match caller.team() {
        Some(team) => Err(ApiError::Forbidden(format!(
            "proxies belong to no team; this token is confined to team {team:?}"
        ))),
        None => Ok(()),
    }
}

fn no_such_proxy(error: LifecycleError) -> ApiError {
    match error {
        LifecycleError::NotFound => ApiError::NotFound("no such proxy".into()),
        other => ApiError::from(other),
    }
}

fn view(state: &AppState, proxy: StoredProxy) -> ProxyView {
    let head = *state.store.subscribe().borrow();
    ProxyView::new(
        proxy,
        head,
        clock::now(),
        state.proxies.stale_after,
        |held| state.proxies.versions.behind_since(held),
    )
}

pub async fn list_proxies(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ProxyList>, ApiError> {
    operator(&caller)?;
    let found = state.blocking(proxies::list).await?;
    let head = *state.store.subscribe().borrow();
    Ok(Json(ProxyList {
        snapshot_version: head,
        proxies: found.into_iter().map(|proxy| view(&state, proxy)).collect(),
    }))
}

pub async fn get_proxy(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
) -> Result<Json<ProxyView>, ApiError> {
    operator(&caller)?;
    let proxy = state
        .blocking(move |store| proxies::find(store, &id).map_err(no_such_proxy))
        .await?;
    Ok(Json(view(&state, proxy)))
}

pub async fn issue_proxy(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<IssueProxyRequest>,
) -> Result<(StatusCode, Json<ProxyView>), ApiError> {
    operator(&caller)?;
    let request = request.validate()?;
    let now = clock::now();
    let issued = state
        .blocking(move |store| proxies::issue(store, &caller.actor, &request, now))
        .await?
        .ok_or_else(|| ApiError::Conflict("a proxy of that name exists".into()))?;
    let mut answer = view(&state, issued.proxy);
    answer.credential_secret = Some(issued.credential);
    Ok((StatusCode::CREATED, Json(answer)))
}

pub async fn revoke_proxy(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
) -> Result<StatusCode, ApiError> {
    operator(&caller)?;
    let now = clock::now();
    let proxy_id = id.clone();
    state
        .blocking(move |store| {
            proxies::revoke(store, &caller.actor, &proxy_id, now).map_err(no_such_proxy)
        })
        .await?;
    // Refused from now on here (within CREDENTIAL_TTL on other replicas), then what it reported
    // that is not counted yet is dropped: queued reports here (a group being written or another
    // replica's queue skips it too: `count_reports` leaves revoked reporters out) and its fleet
    // counts, again once the other replicas refuse it, for a sync they took meanwhile.
    state.proxies.credentials.forget(&id);
    state.usage_queue.drop_proxy(&id);
    forget_fleet_counts(&state, &id).await?;
    let (later, owner) = (state.clone(), id.clone());
    tokio::spawn(async move {
        tokio::time::sleep(CREDENTIAL_TTL * 2).await;
        if let Err(error) = forget_fleet_counts(&later, &owner).await {
            eprintln!(
                "keygate-control: forgetting the fleet counts of revoked proxy {owner}: {error:?}"
            );
        }
    });
    Ok(StatusCode::NO_CONTENT)
}

async fn forget_fleet_counts(state: &AppState, owner: &str) -> Result<(), ApiError> {
    let (fleet, owner) = (Arc::clone(&state.fleet), owner.to_string());
    state
        .blocking(move |store| fleet.forget_owner(store, &owner).map_err(ApiError::from))
        .await
}

pub async fn proxy_reports(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
) -> Result<Json<ReportedUsage>, ApiError> {
    operator(&caller)?;
    let proxy_id = id.clone();
    let rows = state
        .blocking(move |store| proxies::reported(store, &proxy_id).map_err(no_such_proxy))
        .await?;
    Ok(Json(ReportedUsage::new(id, rows)))
}

pub async fn discard_proxy_reports(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
) -> Result<Json<ReportedUsage>, ApiError> {
    operator(&caller)?;
    let now = clock::now();
    let proxy_id = id.clone();
    let rows = state
        .blocking(move |store| {
            proxies::discard_reported(store, &caller.actor, &proxy_id, now).map_err(no_such_proxy)
        })
        .await?;
    Ok(Json(ReportedUsage::new(id, rows)))
}

pub async fn list_enrollment_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<EnrollmentTokenList>, ApiError> {
    operator(&caller)?;
    let tokens = state.blocking(proxies::list_enrollment_tokens).await?;
    Ok(Json(EnrollmentTokenList {
        enrollment_tokens: tokens.into_iter().map(EnrollmentTokenView::from).collect(),
    }))
}

pub async fn create_enrollment_token(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateEnrollmentTokenRequest>,
) -> Result<(StatusCode, Json<EnrollmentTokenView>), ApiError> {
    operator(&caller)?;
    let now = clock::now();
    let (name, expires_at) = request.validate(now)?;
    let (token, secret) = state
        .blocking(move |store| {
            proxies::create_enrollment_token(store, &caller.actor, &name, expires_at, now)
        })
        .await?;
    let mut view = EnrollmentTokenView::from(token);
    view.token = Some(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn revoke_enrollment_token(
    State(state): State<AppState>,
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
) -> Result<StatusCode, ApiError> {
    operator(&caller)?;
    let now = clock::now();
    state
        .blocking(move |store| {
            proxies::revoke_enrollment_token(store, &caller.actor, &id, now).map_err(|error| {
                match error {
                    LifecycleError::NotFound => {
                        ApiError::NotFound("no such enrollment token".into())
                    }
                    other => ApiError::from(other),
                }
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/proxies/enroll`: the enrollment token as the bearer, the proxy's name, labels and
/// version as the body; the answer is its identity and credential. Enrollments are limited per
/// enrollment token (429 with `Retry-After`); failed ones per address, and the address limit
/// only ever refuses failures, so one address's failures (a mesh's sidecar, a load balancer)
/// never keep a valid token out.
pub async fn enroll(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<EnrollRequest>,
) -> Result<(StatusCode, Json<EnrollAnswer>), ApiError> {
    let registry = Arc::clone(&state.proxies);
    let address = Some(peer.ip().to_canonical());
    let now = Instant::now();
    let refuse = |registry: &ProxyRegistry| {
        registry.enroll_refused.fetch_add(1, Ordering::Relaxed);
        match registry.enroll_failures.blocked_for(None, address, now) {
            Some(wait) => throttled(wait, "too many failed enrollments from this address"),
            None => {
                registry.enroll_failures.failed(None, address, now);
                ApiError::Unauthorized
            }
        }
    };
    let secret = match bearer_token(&headers) {
        Some(secret) if secret.starts_with(ENROLLMENT_PREFIX) => secret.to_string(),
        _ => return Err(refuse(&registry)),
    };
    enrollment::validate(&request)?;
    let at = clock::now();
    let lookup = Arc::clone(&registry);
    let token_id = state
        .blocking(move |store| {
            proxies::enrollment_token_id(store, &secret, lookup.bootstrap_enrollment.as_ref(), at)
        })
        .await?;
    let Some(token_id) = token_id else {
        return Err(refuse(&registry));
    };
    if let Some(wait) = registry.enroll_limit.attempt(&token_id, now) {
        return Err(throttled(
            wait,
            "too many enrollments with this enrollment token",
        ));
    }
    let enrolling = token_id.clone();
    let enrolled = state
        .blocking(move |store| Ok::<_, ApiError>(proxies::enroll(store, &enrolling, &request, at)))
        .await?;
    match enrolled {
        Ok(enrolled) => {
            registry.credentials.forget(&enrolled.proxy.id);
            registry.enrolled.fetch_add(1, Ordering::Relaxed);
            let recent = registry.name_churn.enrolled(&enrolled.proxy.name, now);
            if recent >= CHURN_ENROLLMENTS {
                registry.churned.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "keygate-control: warning: proxy {} ({:?}) enrolled {recent} times within a minute: two proxies may share its name (each takes the credential from the other; give each its own proxy_name or node id), or it restarts in a loop",
                    enrolled.proxy.id, enrolled.proxy.name
                );
            }
            Ok((
                StatusCode::OK,
                Json(EnrollAnswer {
                    proxy_id: enrolled.proxy.id,
                    credential: enrolled.credential,
                }),
            ))
        }
        Err(EnrollError::BadToken) => Err(refuse(&registry)),
        Err(EnrollError::Revoked) => {
            registry.enroll_refused.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::Forbidden(
                "a proxy of this name was revoked and cannot enroll again; enroll under another name".into(),
            ))
        }
        Err(EnrollError::Issued) => {
            registry.enroll_refused.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::Conflict(
                "an admin issued this name's credential (POST /v1/proxies): enrolling cannot replace it; enroll under another name".into(),
            ))
        }
        Err(EnrollError::Lifecycle(error)) => Err(ApiError::from(error)),
    }
}

fn throttled(wait: std::time::Duration, why: &str) -> ApiError {
    let retry_after = wait.as_secs().max(1);
    ApiError::TooManyRequests {
        retry_after,
        message: format!("{why}; retry after {retry_after} s"),
    }
}
