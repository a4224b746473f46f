//! What every handler can reach: the store, the two tokens and the configured scopes.

use crate::api::encoding::Encoding;
use crate::api::error::ApiError;
use crate::app::error::LifecycleError;
use crate::app::oauth::failures::FailureLimiter;
use crate::app::oauth::OAuthServer;
use crate::app::proxies::ProxyRegistry;
use crate::app::scanning_keys::ScanningKeysFile;
use crate::app::usage_queue::UsageQueue;
use crate::domain::alerts::AlertSettings;
use crate::domain::leaks::LeakPolicy;
use crate::domain::secrets::TokenDigest;
use crate::domain::webhook_url::UrlPolicy;
use crate::feed::delta_cache::DeltaCache;
use crate::feed::full_snapshot::SnapshotCache;
use crate::feed::versions::HeldPolls;
use crate::fleet::bounds::FleetBounds;
use crate::fleet::redis::FlushStats;
use crate::fleet::FleetCounts;
use crate::store::Store;
use ipnet::IpNet;
use std::sync::Arc;
use tokio::sync::{watch, Notify};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub admin_token: Arc<TokenDigest>,
    /// The shared sync token; `None` with `--no-shared-sync-token`.
    pub sync_token: Option<Arc<TokenDigest>>,
    /// Proxy identity: credentials checked, sightings gathered, enrollment limits.
    pub proxies: Arc<ProxyRegistry>,
    pub allowed_scopes: Arc<[String]>,
    /// Turns `true` when the service is shutting down, so long polls answer at once.
    pub shutting_down: watch::Receiver<bool>,
    /// Long polls held right now (`GET /v1/snapshot/polls`).
    pub held_polls: HeldPolls,
    /// The fleet-wide rate-limit counts (`POST /v1/ratelimits/sync`).
    pub fleet: Arc<FleetCounts>,
    /// Every limited key's limits, which bound what a sync may count (`fleet::bounds`).
    pub fleet_bounds: Arc<FleetBounds>,
    /// What the Redis flushes did (all zero without Redis).
    pub fleet_stats: Arc<FlushStats>,
    /// The full snapshot in the compact encoding, built once for every starting proxy.
    pub full_snapshot: Arc<SnapshotCache>,
    /// Recent encoded delta pages, shared by the polls that wake for the same version.
    pub delta_pages: Arc<DeltaCache<DeltaKey>>,
    /// Usage reports waiting to be counted with the next group (`app/usage_queue.rs`).
    pub usage_queue: Arc<UsageQueue>,
    /// When quota and refusal alerts fire.
    pub alerts: AlertSettings,
    /// Which addresses webhooks may call.
    pub webhook_policy: UrlPolicy,
    /// Wakes this replica's webhook sender when an API call queued a delivery.
    pub webhook_wake: Arc<Notify>,
    /// GitHub's secret scanning keys (`--secret-scanning-keys`); none: reports are refused.
    pub scanning_keys: Option<Arc<ScanningKeysFile>>,
    /// What a key reported leaked gets (`--leaked-key-policy`).
    pub leak_policy: LeakPolicy,
    /// The OAuth 2.0 authorization server; none when no sealing key is configured.
    pub oauth: Option<Arc<OAuthServer>>,
    /// Failed token-endpoint authentications per client id and address.
    pub oauth_failures: Arc<FailureLimiter>,
    /// Peers whose `X-Forwarded-For` names the client (`--trusted-proxies`).
    pub trusted_proxies: Arc<[IpNet]>,
}

/// What makes two delta requests get the same bytes: since, the published version they woke
/// for, the encoding and the page size (only first pages of a delta are cached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaKey {
    pub since: u64,
    pub version: u64,
    pub encoding: Encoding,
    pub limit: usize,
}

/// Pages the delta cache holds: a few recent versions in both encodings and page sizes.
pub const DELTA_CACHE_ENTRIES: usize = 64;
/// Bytes of bodies the delta cache holds at most (one larger page is still kept alone).
pub const DELTA_CACHE_BYTES: usize = 16 << 20;

/// An empty delta cache with the service's bounds.
pub fn delta_cache() -> Arc<DeltaCache<DeltaKey>> {
    Arc::new(DeltaCache::new(DELTA_CACHE_ENTRIES, DELTA_CACHE_BYTES))
}

impl AppState {
    /// Runs blocking database work on tokio's blocking pool, off the async workers.
    pub async fn blocking<T, E>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        self.store
            .run_blocking(work)
            .await
            .map_err(|error| ApiError::Internal(format!("database task failed: {error}")))?
            .map_err(Into::into)
    }
}

impl From<LifecycleError> for ApiError {
    fn from(error: LifecycleError) -> Self {
        match error {
            LifecycleError::NotFound => ApiError::NotFound("no such key".into()),
            LifecycleError::Deleted => ApiError::Conflict("the key was deleted".into()),
            LifecycleError::Leaked => ApiError::Conflict(LifecycleError::Leaked.to_string()),
            LifecycleError::Invalid(error) => ApiError::from(error),
            LifecycleError::Database(error) => ApiError::from(error),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
