//! `POST /v1/ratelimits/sync`: an Envoy posts what it admitted per limited key and window
//! bucket (absolute counts) and is answered what the rest of the fleet admitted
//! (`keygate_contract::fleet`). Authenticated with the sync token, like `POST /v1/usage`.

use crate::api::auth::SyncAuth;
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, MAX_PROXY_BODY_BYTES};
use crate::api::state::AppState;
use crate::domain::clock;
use axum::extract::State;
use axum::Json;
use keygate_contract::fleet::{self, FleetSyncPost, FleetSyncReply};
use std::sync::Arc;

pub async fn sync_fleet(
    State(state): State<AppState>,
    _: SyncAuth,
    JsonBody(post): JsonBody<FleetSyncPost, MAX_PROXY_BODY_BYTES>,
) -> Result<Json<FleetSyncReply>, ApiError> {
    fleet::validate_post(&post)?;
    let now_ms = clock::now_ms();
    let counts = Arc::clone(&state.fleet);
    let reply = state
        .blocking(move |store| counts.sync(store, &post, now_ms))
        .await?;
    Ok(Json(reply))
}
