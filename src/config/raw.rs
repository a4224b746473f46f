//! The plugin configuration as its JSON says it: serde structs read strictly
//! (`deny_unknown_fields`), with their defaults. `config.rs` validates them into `Config`.

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) control: RawControl,
    /// Read as text so a bad value is reported with its field name.
    #[serde(default)]
    pub(super) fail_mode: Option<String>,
    #[serde(default = "default_max_staleness")]
    pub(super) max_staleness: String,
    #[serde(default)]
    pub(super) key_header: Option<String>,
    #[serde(default)]
    pub(super) key_query_param: Option<String>,
    #[serde(default)]
    pub(super) allowed_prefixes: Vec<String>,
    #[serde(default)]
    pub(super) xff_trusted_hops: usize,
    #[serde(default)]
    pub(super) forward_credentials: bool,
    /// Off by default: the filter-state write was the dearest host call of an allowed request
    /// (~20 µs); access logs read `%REQ(X-KEYGATE-KEY-ID)%` instead.
    #[serde(default)]
    pub(super) key_id_property: bool,
    #[serde(default = "default_realm")]
    pub(super) realm: String,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) default_scope: Option<String>,
    #[serde(default)]
    pub(super) deny_unmatched: bool,
    #[serde(default)]
    pub(super) case_sensitive_paths: bool,
    #[serde(default)]
    pub(super) rate_limits: RawRateLimits,
    #[serde(default)]
    pub(super) usage: RawUsage,
    /// OAuth 2.0 access tokens verified by Envoy's `jwt_authn` before this filter; none: off.
    #[serde(default)]
    pub(super) oauth: Option<RawOAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOAuth {
    /// The `payload_in_metadata` of the `jwt_authn` provider that verifies Keygate's tokens.
    pub(super) payload_in_metadata: String,
    /// The issuer of Keygate's tokens (the control service's `--oauth-issuer`): the only `iss`
    /// taken from that metadata.
    pub(super) issuer: String,
    #[serde(default = "default_jwt_namespace")]
    pub(super) metadata_namespace: String,
}

fn default_jwt_namespace() -> String {
    "envoy.filters.http.jwt_authn".into()
}

/// The most rate-limit slots a table may grow to, and the default bound: 16.7 M slots, room
/// for 12.5 M limited keys active at once (about 1.6 GB of shared data when all are used).
pub const MAX_SLOTS: u64 = 16_777_216;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRateLimits {
    pub(super) headers: bool,
    pub(super) slots: u64,
    pub(super) minute_window: String,
    pub(super) hour_window: String,
    pub(super) day_window: String,
    pub(super) in_flight_expiry: String,
    pub(super) fleet: bool,
    pub(super) sync_path: String,
    pub(super) sync_interval: String,
    pub(super) sync_encoding: String,
}

impl Default for RawRateLimits {
    fn default() -> RawRateLimits {
        RawRateLimits {
            headers: true,
            slots: MAX_SLOTS,
            minute_window: "60s".into(),
            hour_window: "1h".into(),
            day_window: "24h".into(),
            in_flight_expiry: "10m".into(),
            fleet: true,
            sync_path: "/v1/ratelimits/sync".into(),
            sync_interval: "1s".into(),
            sync_encoding: "binary".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawUsage {
    pub(super) enabled: bool,
    pub(super) path: String,
    pub(super) report_interval: String,
    pub(super) response_detail: bool,
}

impl Default for RawUsage {
    fn default() -> RawUsage {
        RawUsage {
            enabled: true,
            path: "/v1/usage".into(),
            report_interval: "5s".into(),
            response_detail: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub(super) cluster: String,
    /// Where the native build's own HTTP client reaches the control service: one URL, or a
    /// list of replicas' URLs.
    #[serde(default)]
    pub(super) url: Option<RawUrls>,
    /// The CA the native build's client trusts for an `https://` `url`.
    #[serde(default)]
    pub(super) ca_file: Option<String>,
    #[serde(default)]
    pub(super) authority: Option<String>,
    #[serde(default = "default_snapshot_path")]
    pub(super) path: String,
    #[serde(default)]
    pub(super) token: Option<String>,
    #[serde(default)]
    pub(super) token_env: Option<String>,
    #[serde(default)]
    pub(super) enrollment_token: Option<String>,
    #[serde(default)]
    pub(super) enrollment_token_env: Option<String>,
    #[serde(default)]
    pub(super) proxy_name: Option<String>,
    #[serde(default)]
    pub(super) proxy_labels: std::collections::BTreeMap<String, String>,
    #[serde(default = "default_refresh_interval")]
    pub(super) refresh_interval: String,
    #[serde(default = "default_timeout")]
    pub(super) timeout: String,
    #[serde(default = "default_long_poll_wait")]
    pub(super) long_poll_wait: String,
    #[serde(default = "default_page_size")]
    pub(super) page_size: u32,
}

/// `control.url`: a string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a URL or a list of URLs")]
pub(super) enum RawUrls {
    One(String),
    Several(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    #[serde(default)]
    pub(super) methods: Vec<String>,
    #[serde(default)]
    pub(super) exact: Option<String>,
    #[serde(default)]
    pub(super) prefix: Option<String>,
    #[serde(default)]
    pub(super) template: Option<String>,
    #[serde(default)]
    pub(super) scope: Option<String>,
    /// What usage counts the route's requests under (default: the scope).
    #[serde(default)]
    pub(super) name: Option<String>,
}

fn default_max_staleness() -> String {
    "5m".into()
}
fn default_realm() -> String {
    "keygate".into()
}
fn default_snapshot_path() -> String {
    "/v1/snapshot".into()
}
fn default_refresh_interval() -> String {
    "10s".into()
}
fn default_timeout() -> String {
    "5s".into()
}
fn default_long_poll_wait() -> String {
    "0s".into()
}
fn default_page_size() -> u32 {
    10_000
}
