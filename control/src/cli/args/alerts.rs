//! `serve`'s alert and webhook options (docs/webhooks.md).

use crate::domain::alerts::AlertSettings;
use crate::domain::webhook_url::UrlPolicy;
use crate::domain::webhooks::SenderSettings;
use clap::Args;

#[derive(Debug, Args)]
pub struct AlertArgs {
    /// `quota.threshold` fires when a key's or team's quota use reaches this percentage.
    #[arg(
        long,
        env = "KEYGATE_QUOTA_ALERT_PERCENT",
        default_value_t = 80,
        value_name = "PERCENT",
        value_parser = clap::value_parser!(u8).range(1..=99)
    )]
    pub quota_alert_percent: u8,
    /// `ratelimit.refusals` fires when a key is refused more than this many times in 5 minutes.
    #[arg(
        long,
        env = "KEYGATE_REFUSAL_ALERT_COUNT",
        default_value_t = 100,
        value_name = "COUNT",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub refusal_alert_count: u64,
    /// Let webhooks call private, loopback and link-local addresses and plain http (for local
    /// use; `make run` sets it). Off, such URLs are refused when saved and when delivered.
    #[arg(long, env = "KEYGATE_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Seconds one delivery attempt may take (connect, send, answer).
    #[arg(
        long,
        env = "KEYGATE_WEBHOOK_TIMEOUT",
        default_value_t = 10,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub webhook_timeout: u64,
    /// Seconds before the first retry of a failed delivery; each next retry waits twice as
    /// long, up to 24 hours.
    #[arg(
        long,
        env = "KEYGATE_WEBHOOK_RETRY_BASE",
        default_value_t = 5,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=86400)
    )]
    pub webhook_retry_base: u64,
}

impl AlertArgs {
    pub fn settings(&self) -> AlertSettings {
        AlertSettings {
            quota_percent: self.quota_alert_percent,
            refusals: self.refusal_alert_count,
        }
    }

    pub fn policy(&self) -> UrlPolicy {
        UrlPolicy {
            allow_private: self.webhook_allow_private,
        }
    }

    pub fn sender(&self) -> SenderSettings {
        SenderSettings {
            policy: self.policy(),
            timeout: std::time::Duration::from_secs(self.webhook_timeout),
            retry_base: chrono::Duration::seconds(
                i64::try_from(self.webhook_retry_base).unwrap_or(5),
            ),
        }
    }
}
