//! `serve`'s OAuth 2.0 options (docs/security.md, "OAuth 2.0"). The sealing key turns it on.

use crate::cli::args::listener::parse_duration;
use clap::Args;
use std::time::Duration;

/// The variable holding the key that seals the signing keys (32 bytes, base64).
pub const SEALING_KEY_VAR: &str = "KEYGATE_OAUTH_SEALING_KEY";

#[derive(Debug, Args)]
pub struct OAuthArgs {
    /// The issuer (`iss`) of access tokens: the public URL clients reach the API at, where
    /// `/oauth/token` and `/.well-known/*` are routed to this service. OAuth is on when
    /// KEYGATE_OAUTH_SEALING_KEY is set.
    #[arg(
        long,
        env = "KEYGATE_OAUTH_ISSUER",
        value_name = "URL",
        default_value = "http://127.0.0.1:10000"
    )]
    pub oauth_issuer: String,
    /// The audience (`aud`) of access tokens, which Envoy's jwt_authn checks (default: the issuer).
    #[arg(long, env = "KEYGATE_OAUTH_AUDIENCE", value_name = "TEXT")]
    pub oauth_audience: Option<String>,
    /// How long an access token lives (never past its key's expiry).
    #[arg(long, env = "KEYGATE_OAUTH_TOKEN_LIFETIME", value_name = "DURATION",
          default_value = "15m", value_parser = parse_duration)]
    pub oauth_token_lifetime: Duration,
    /// How long a signing key signs before its successor takes over, up to 365d (`30d`, `12h`).
    #[arg(long, env = "KEYGATE_OAUTH_KEY_ROTATION", value_name = "DURATION",
          default_value = "30d", value_parser = parse_rotation)]
    pub oauth_key_rotation: Duration,
    /// How long a successor signing key is published before it signs: at least the
    /// `cache_duration` of Envoy's jwt_authn remote JWKS.
    #[arg(long, env = "KEYGATE_OAUTH_PUBLISH_AHEAD", value_name = "DURATION",
          default_value = "10m", value_parser = parse_duration)]
    pub oauth_publish_ahead: Duration,
    /// Peers whose X-Forwarded-For names the client (comma-separated addresses or CIDRs): the
    /// Envoys in front of the token endpoint, so failed authentications count per client
    /// address rather than per Envoy.
    #[arg(
        long,
        env = "KEYGATE_TRUSTED_PROXIES",
        value_name = "CIDRS",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
}

/// A rotation period: `Nd` days (1 to 365), or a duration (`12h`, `90s`).
fn parse_rotation(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let rotation = match text.strip_suffix('d') {
        Some(days) => {
            let days: u64 = days
                .parse()
                .map_err(|_| format!("{text:?}: write days as 30d, or a duration such as 12h"))?;
            Duration::from_secs(days.saturating_mul(24 * 3600))
        }
        None => parse_duration(text)?,
    };
    if rotation.is_zero() || rotation > Duration::from_secs(365 * 24 * 3600) {
        return Err(format!("{text:?}: must be more than 0 and at most 365d"));
    }
    Ok(rotation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_periods_in_days_or_hours() {
        assert_eq!(parse_rotation("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_rotation("12h"), Ok(Duration::from_secs(12 * 3600)));
        for bad in ["0d", "366d", "0s", "xd"] {
            assert!(parse_rotation(bad).is_err(), "{bad}");
        }
    }
}
