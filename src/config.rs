//! Plugin configuration: the raw JSON from the Envoy YAML, validated once in `on_configure`
//! into a `Config` whose fields are the types the request path wants.
//!
//! Each field's raw form and default are in `raw.rs`, durations in `duration.rs`; here each is
//! checked (range, error message naming the field) into the validated type. The table of tests
//! is `tests.rs`.

use std::fmt;
use std::time::Duration;

use crate::limits::window::Windows;
use crate::policy::routes::{PathMatcher, RouteRule, RouteTable};
use crate::policy::token::TokenSource;

mod duration;
mod identity;
mod raw;

pub use duration::{parse_duration, DurationError};
pub use identity::{ControlAuth, Enrollment};
pub use raw::MAX_SLOTS;
use raw::{RawConfig, RawControl, RawRateLimits, RawRoute, RawUrls, RawUsage};

/// What to do when no usable snapshot is loaded (none yet, or older than `max_staleness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Answer 503 AUTH_UNAVAILABLE.
    #[default]
    Closed,
    /// Let the request through, marked with `x-keygate-fail-open: true`.
    Open,
}

/// How the fleet sync's post and answer travel (`contract::fleet::binary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncEncoding {
    /// `application/vnd.keygate.fleet-sync+binary`, about a fifth of the JSON's bytes; JSON
    /// from then on if the control service answers 415 (one older than the encoding).
    #[default]
    Binary,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub control: ControlConfig,
    pub fail_mode: FailMode,
    pub max_staleness: Duration,
    pub key_header: Option<String>,
    pub key_query_param: Option<String>,
    pub allowed_prefixes: Vec<String>,
    pub xff_trusted_hops: usize,
    pub forward_credentials: bool,
    /// Also set the key id as filter state `wasm.keygate_key_id` (for access logs). The
    /// `x-keygate-key-id` request header is there for logs anyway; this costs a host call.
    pub key_id_property: bool,
    pub realm: String,
    pub routes: RouteTable,
    pub rate_limits: RateLimitConfig,
    pub usage: UsageConfig,
    /// Where verified OAuth access tokens' claims are read; `None`: tokens are not accepted.
    pub oauth: Option<TokenSource>,
}

/// Per-key rate limiting (limits themselves come from the snapshot).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Send `X-RateLimit-*` and `RateLimit-Policy` / `RateLimit` headers.
    pub headers: bool,
    /// Upper bound on the counter slots in shared data; below it the table is sized by the
    /// limited keys in the snapshot (`limits::counters::wanted_capacity`).
    pub slots: u64,
    pub windows: Windows,
    /// Fleet-wide limits: sync counts with the control service (`sync/fleet.rs`).
    pub fleet: bool,
    /// Path of the control service's sync endpoint.
    pub sync_path: String,
    /// How often this Envoy syncs its counts (one call per Envoy).
    pub sync_interval: Duration,
    pub sync_encoding: SyncEncoding,
}

/// Usage reporting to the control service.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageConfig {
    pub enabled: bool,
    pub path: String,
    pub report_interval: Duration,
    /// Count what the upstream answered and how long allowed requests took, and their failures
    /// as events: the log phase's work. Off, a request is counted when it is decided, and the
    /// filter does nothing after that (no status read, no log-phase bookkeeping).
    pub response_detail: bool,
}

/// Where and how the filter pulls the key snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    pub cluster: String,
    /// The control service's base URLs (`http://host:port` or `https://…`, no path), in order
    /// of preference: what the native build's own HTTP client calls, where the Wasm build calls
    /// `cluster` through Envoy. Empty when not configured (the Wasm build does not read it).
    pub urls: Vec<String>,
    /// A PEM file of the CA certificates the native build's client trusts for `https://` URLs,
    /// instead of the public web roots (a private CA, as `scripts/dev-pki.sh` makes).
    pub ca_file: Option<String>,
    pub authority: String,
    pub path: String,
    pub auth: ControlAuth,
    pub refresh_interval: Duration,
    pub timeout: Duration,
    /// Long-poll wait sent to the control service; zero turns long polling off.
    pub long_poll_wait: Duration,
    pub page_size: u32,
}

impl ControlConfig {
    /// The enrollment settings, when the filter enrolls for its credential.
    pub fn enrollment(&self) -> Option<&Enrollment> {
        match &self.auth {
            ControlAuth::Token(_) => None,
            ControlAuth::Enroll(enrollment) => Some(enrollment),
        }
    }
}

/// A configuration error, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn field_error(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

fn duration_field(
    field: &str,
    text: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let value = parse_duration(text).map_err(|reason| field_error(field, reason.to_string()))?;
    if value < min || value > max {
        return Err(field_error(
            field,
            format!(
                "{text:?} is out of range ({}ms to {}ms)",
                min.as_millis(),
                max.as_millis()
            ),
        ));
    }
    Ok(value)
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Reads an environment variable; in Envoy it comes from `vm_config.environment_variables`.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Parses and validates the plugin configuration JSON.
    pub fn parse(bytes: &[u8], env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let message = e.inner().to_string();
            let field = match path.as_str() {
                "." | "" => field_from_serde_message(&message),
                _ => path,
            };
            field_error(field, message)
        })?;
        // Without this, anything after the first JSON value is ignored: a half-edited config
        // such as `{…"key_header":"x"} ] }` would load with its routes silently dropped.
        deserializer
            .end()
            .map_err(|e| field_error("configuration", e.to_string()))?;
        Config::validate(raw, env)
    }

    fn validate(raw: RawConfig, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let control = validate_control(raw.control, env)?;
        let fail_mode = match raw.fail_mode.as_deref() {
            None | Some("closed") => FailMode::Closed,
            Some("open") => FailMode::Open,
            Some(other) => {
                return Err(field_error(
                    "fail_mode",
                    format!("{other:?} is not one of \"closed\" or \"open\""),
                ))
            }
        };
        let max_staleness = duration_field(
            "max_staleness",
            &raw.max_staleness,
            Duration::from_secs(1),
            Duration::from_secs(30 * 24 * 3600),
        )?;
        let key_header = match raw.key_header {
            Some(name) => {
                let name = name.to_ascii_lowercase();
                if !is_header_name(&name)
                    || name == "authorization"
                    || name.starts_with("x-keygate-")
                {
                    return Err(field_error(
                        "key_header",
                        format!("{name:?} is not a usable header name"),
                    ));
                }
                Some(name)
            }
            None => None,
        };
        if let Some(param) = &raw.key_query_param {
            if param.is_empty()
                || !param
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(field_error(
                    "key_query_param",
                    format!("{param:?} is not a usable query parameter name"),
                ));
            }
        }
        for (i, prefix) in raw.allowed_prefixes.iter().enumerate() {
            if prefix.is_empty() {
                return Err(field_error(
                    format!("allowed_prefixes[{i}]"),
                    "must not be empty",
                ));
            }
        }
        if raw.xff_trusted_hops > 16 {
            return Err(field_error("xff_trusted_hops", "must be between 0 and 16"));
        }
        if raw.realm.is_empty()
            || raw.realm.contains(['"', '\\'])
            || raw.realm.chars().any(char::is_control)
        {
            return Err(field_error(
                "realm",
                "must be non-empty printable text without quotes",
            ));
        }
        let mut rules = Vec::with_capacity(raw.routes.len());
        for (i, route) in raw.routes.into_iter().enumerate() {
            rules.push(validate_route(i, route)?);
        }
        if let Some(scope) = &raw.default_scope {
            if scope.is_empty() {
                return Err(field_error(
                    "default_scope",
                    "must not be empty (omit it for none)",
                ));
            }
            keygate_contract::fields::scope("default_scope", scope)
                .map_err(|e| field_error(e.field, e.message))?;
            if raw.deny_unmatched {
                return Err(field_error(
                    "default_scope",
                    "cannot be combined with deny_unmatched (unmatched requests are refused)",
                ));
            }
        }
        let rate_limits = validate_rate_limits(raw.rate_limits)?;
        let usage = validate_usage(raw.usage)?;
        let oauth = match raw.oauth {
            Some(oauth) if oauth.payload_in_metadata.is_empty() => {
                return Err(field_error(
                    "oauth.payload_in_metadata",
                    "must not be empty",
                ))
            }
            Some(oauth) if oauth.metadata_namespace.is_empty() => {
                return Err(field_error("oauth.metadata_namespace", "must not be empty"))
            }
            Some(oauth) if oauth.issuer.is_empty() => {
                return Err(field_error("oauth.issuer", "must not be empty"))
            }
            Some(oauth) => Some(TokenSource {
                metadata_namespace: oauth.metadata_namespace,
                payload_key: oauth.payload_in_metadata,
                issuer: oauth.issuer,
            }),
            None => None,
        };
        Ok(Config {
            control,
            fail_mode,
            max_staleness,
            key_header,
            key_query_param: raw.key_query_param,
            allowed_prefixes: raw.allowed_prefixes,
            xff_trusted_hops: raw.xff_trusted_hops,
            forward_credentials: raw.forward_credentials,
            key_id_property: raw.key_id_property,
            realm: raw.realm,
            routes: RouteTable::new(rules, raw.default_scope)
                .with_options(raw.case_sensitive_paths, raw.deny_unmatched),
            rate_limits,
            usage,
            oauth,
        })
    }
}

fn validate_control(mut raw: RawControl, env: EnvLookup<'_>) -> Result<ControlConfig, ConfigError> {
    if raw.cluster.is_empty() {
        return Err(field_error("control.cluster", "must not be empty"));
    }
    if !raw.path.starts_with('/') || raw.path.contains(['?', '#']) {
        return Err(field_error(
            "control.path",
            format!("{:?} must be an absolute path without a query", raw.path),
        ));
    }
    let auth = identity::control_auth(&mut raw, env)?;
    let refresh_interval = duration_field(
        "control.refresh_interval",
        &raw.refresh_interval,
        Duration::from_millis(200),
        Duration::from_secs(3600),
    )?;
    let timeout = duration_field(
        "control.timeout",
        &raw.timeout,
        Duration::from_millis(100),
        Duration::from_secs(120),
    )?;
    let long_poll_wait = duration_field(
        "control.long_poll_wait",
        &raw.long_poll_wait,
        Duration::ZERO,
        Duration::from_secs(60),
    )?;
    if long_poll_wait > Duration::ZERO && long_poll_wait < Duration::from_secs(1) {
        return Err(field_error(
            "control.long_poll_wait",
            "must be 0s (off) or at least 1s",
        ));
    }
    if !(100..=50_000).contains(&raw.page_size) {
        return Err(field_error(
            "control.page_size",
            "must be between 100 and 50000",
        ));
    }
    let urls = match raw.url {
        None => Vec::new(),
        Some(RawUrls::One(url)) => vec![control_url("control.url", &url)?],
        Some(RawUrls::Several(urls)) if (1..=MAX_CONTROL_URLS).contains(&urls.len()) => urls
            .iter()
            .enumerate()
            .map(|(index, url)| control_url(&format!("control.url[{index}]"), url))
            .collect::<Result<_, _>>()?,
        Some(RawUrls::Several(_)) => {
            return Err(field_error(
                "control.url",
                format!("a list of 1 to {MAX_CONTROL_URLS} URLs"),
            ))
        }
    };
    if raw.ca_file.as_deref().is_some_and(str::is_empty) {
        return Err(field_error("control.ca_file", "names no file"));
    }
    Ok(ControlConfig {
        urls,
        ca_file: raw.ca_file,
        authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
        cluster: raw.cluster,
        path: raw.path,
        auth,
        refresh_interval,
        timeout,
        long_poll_wait,
        page_size: raw.page_size,
    })
}

/// Replicas `control.url` may list.
const MAX_CONTROL_URLS: usize = 16;

/// A `control.url` (named `field`): a scheme, a host and maybe a port, nothing else (a path
/// would be ambiguous next to `control.path`; user info would put a secret in the
/// configuration's logs). Checked here, not at the first call, where a typo would look like a
/// replica that does not answer.
fn control_url(field: &str, text: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| field_error(field, format!("{text:?}: {reason}"));
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(|| invalid("must start with http:// or https://"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) || authority.chars().any(char::is_whitespace) {
        return Err(invalid(
            "must be scheme://host[:port] only: no path, query, user info or spaces",
        ));
    }
    // An IPv6 address is bracketed, and only then may the host hold a colon.
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (address, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 address needs its closing ]"))?;
            address
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| invalid("is not an IPv6 address in brackets"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid("only :port may follow the address"))?,
                ),
            };
            (address, port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(invalid("names no host"));
    }
    if let Some(port) = port {
        if !matches!(port.parse::<u16>(), Ok(1..)) {
            return Err(invalid("the port must be a number from 1 to 65535"));
        }
    }
    Ok(text.strip_suffix('/').unwrap_or(text).to_string())
}

fn validate_rate_limits(raw: RawRateLimits) -> Result<RateLimitConfig, ConfigError> {
    if !(16..=MAX_SLOTS).contains(&raw.slots) {
        return Err(field_error(
            "rate_limits.slots",
            format!("must be between 16 and {MAX_SLOTS}"),
        ));
    }
    let window = |field: &str, text: &str, max: Duration| {
        duration_field(field, text, Duration::from_secs(1), max).map(|d| d.as_millis() as u64)
    };
    let windows = Windows {
        lengths_ms: [
            window(
                "rate_limits.minute_window",
                &raw.minute_window,
                Duration::from_secs(60),
            )?,
            window(
                "rate_limits.hour_window",
                &raw.hour_window,
                Duration::from_secs(3600),
            )?,
            window(
                "rate_limits.day_window",
                &raw.day_window,
                Duration::from_secs(86_400),
            )?,
        ],
        in_flight_expiry_ms: window(
            "rate_limits.in_flight_expiry",
            &raw.in_flight_expiry,
            Duration::from_secs(86_400),
        )?,
    };
    if !raw.sync_path.starts_with('/') || raw.sync_path.contains(['?', '#']) {
        return Err(field_error(
            "rate_limits.sync_path",
            format!(
                "{:?} must be an absolute path without a query",
                raw.sync_path
            ),
        ));
    }
    let sync_interval = duration_field(
        "rate_limits.sync_interval",
        &raw.sync_interval,
        Duration::from_millis(200),
        Duration::from_secs(10),
    )?;
    let sync_encoding = match raw.sync_encoding.as_str() {
        "binary" => SyncEncoding::Binary,
        "json" => SyncEncoding::Json,
        other => {
            return Err(field_error(
                "rate_limits.sync_encoding",
                format!("{other:?} is not one of \"binary\" or \"json\""),
            ))
        }
    };
    Ok(RateLimitConfig {
        headers: raw.headers,
        slots: raw.slots,
        windows,
        fleet: raw.fleet,
        sync_path: raw.sync_path,
        sync_interval,
        sync_encoding,
    })
}

fn validate_usage(raw: RawUsage) -> Result<UsageConfig, ConfigError> {
    if !raw.path.starts_with('/') || raw.path.contains(['?', '#']) {
        return Err(field_error(
            "usage.path",
            format!("{:?} must be an absolute path without a query", raw.path),
        ));
    }
    Ok(UsageConfig {
        enabled: raw.enabled,
        response_detail: raw.response_detail,
        path: raw.path,
        report_interval: duration_field(
            "usage.report_interval",
            &raw.report_interval,
            Duration::from_millis(200),
            Duration::from_secs(300),
        )?,
    })
}

fn validate_route(index: usize, raw: RawRoute) -> Result<RouteRule, ConfigError> {
    let at = |field: &str| format!("routes[{index}].{field}");
    let path = match (raw.exact, raw.prefix, raw.template) {
        (Some(exact), None, None) => PathMatcher::exact(&exact),
        (None, Some(prefix), None) => PathMatcher::prefix(&prefix),
        (None, None, Some(template)) => PathMatcher::template(&template),
        _ => {
            return Err(field_error(
                at("path"),
                "exactly one of exact, prefix or template is required",
            ))
        }
    }
    .map_err(|reason| field_error(at("path"), reason.to_string()))?;
    let mut methods = Vec::with_capacity(raw.methods.len());
    for (m, method) in raw.methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(field_error(
                format!("routes[{index}].methods[{m}]"),
                format!("{method:?} is not an HTTP method"),
            ));
        }
        methods.push(method.to_ascii_uppercase());
    }
    if let Some(scope) = &raw.scope {
        if scope.is_empty() {
            return Err(field_error(
                at("scope"),
                "must not be empty (omit it for no scope)",
            ));
        }
        keygate_contract::fields::scope(&at("scope"), scope)
            .map_err(|e| field_error(e.field, e.message))?;
    }
    if let Some(name) = &raw.name {
        keygate_contract::usage::route_name(&at("name"), name)
            .map_err(|e| field_error(e.field, e.message))?;
    }
    let name = raw
        .name
        .or_else(|| raw.scope.clone())
        .unwrap_or_else(|| keygate_contract::usage::UNSCOPED_ROUTE.to_string());
    Ok(RouteRule {
        methods,
        path,
        scope: raw.scope,
        name,
    })
}

/// serde_json reports unknown fields as "unknown field `x`, expected …"; pull the name out so
/// the log line names the field like our own validation errors do.
fn field_from_serde_message(message: &str) -> String {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(start) = message.find(marker) {
            let rest = &message[start + marker.len()..];
            if let Some(end) = rest.find('`') {
                return rest[..end].to_string();
            }
        }
    }
    "configuration".into()
}

#[cfg(test)]
mod tests;
