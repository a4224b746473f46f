//! Webhook deliveries as the Standard Webhooks specification defines them: the signing secret
//! (`whsec_` + base64 of 24 random bytes), the `webhook-*` headers, the retry schedule and when
//! a failing endpoint is disabled. Pure functions; sending is `server/webhook_sender.rs`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A webhook endpoint as stored. The secrets never leave the service except the new one, once,
/// in the answer that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub description: String,
    /// Event types (`AlertKind` names) it receives.
    pub events: Vec<String>,
    /// Receives only this team's events (`None`: every event).
    pub team: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// First failed delivery since the last success.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Webhook {
    /// The secrets that sign a delivery at `now`: the current one, and the previous one during
    /// its grace.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until) {
            if until > now {
                secrets.push(previous);
            }
        }
        secrets
    }

    /// Whether an event of `kind` for `team` goes to this endpoint.
    pub fn wants(&self, kind: &str, team: Option<&str>) -> bool {
        self.enabled
            && self.events.iter().any(|event| event == kind)
            && (self.team.is_none() || self.team.as_deref() == team)
    }
}

/// What a new endpoint is made of (checked by `wire::webhooks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub team: Option<String>,
}

/// What a PATCH changes; `None` keeps a field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// How the sender works (`serve --webhook-*`).
#[derive(Debug, Clone, Copy)]
pub struct SenderSettings {
    pub policy: crate::domain::webhook_url::UrlPolicy,
    /// Whole-attempt timeout (name lookup, then connect, send, answer: each bounded by it).
    pub timeout: std::time::Duration,
    /// The first retry's delay; each next one doubles, up to a day.
    pub retry_base: Duration,
}

impl SenderSettings {
    /// How long a replica holds a delivery it sends: longer than an attempt can take (the name
    /// lookup and the request, each bounded by the timeout), so a live replica never loses its
    /// lease and a dead one's lapses soon.
    pub fn lease(&self) -> Duration {
        let timeout = Duration::from_std(self.timeout).unwrap_or(Duration::seconds(30));
        timeout + timeout + Duration::seconds(5)
    }
}

/// What happened to one event at one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its first or next attempt.
    Pending,
    Delivered,
    /// Given up: its endpoint was disabled or deleted.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// One event's delivery to one endpoint, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    pub webhook_id: String,
    /// The event's id: the `webhook-id` header of every attempt.
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A delivery leased for sending: what the sender needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedDelivery {
    pub seq: i64,
    /// Until when this replica holds it (Unix milliseconds).
    pub lease_until_ms: i64,
    pub event_id: String,
    /// The event's body, signed as is.
    pub body: String,
    pub webhook: Webhook,
    pub attempts: u32,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// Any other answer, or none (`status` absent): refused address, timeout, connection.
    Failed { status: Option<u16>, error: String },
}

/// What every signing secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a signing secret (the specification asks for 24 to 64).
pub const SECRET_BYTES: usize = 24;
/// How long a rotated-out secret still signs beside the new one, unless the rotation says.
pub const DEFAULT_SECRET_GRACE_SECONDS: u64 = 24 * 60 * 60;
/// The longest grace a rotation may give the old secret.
pub const MAX_SECRET_GRACE_SECONDS: u64 = 366 * 24 * 60 * 60;
/// Longest wait between two attempts of a delivery.
pub const MAX_RETRY_DELAY: Duration = Duration::hours(24);
/// An endpoint whose deliveries have failed without a success for this long is disabled.
pub const DISABLE_AFTER: Duration = Duration::days(3);
/// Characters of a failed answer's body kept for the delivery log.
pub const ERROR_EXCERPT_CHARS: usize = 200;

/// A new signing secret.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
}

/// The `v1,<base64>` signature of one delivery under `secret` (`whsec_…`): HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` keyed with the secret's decoded bytes. `None` for a secret that is
/// not ours (never stored by this service).
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: the current secret's signature, and during a rotation's
/// grace the previous secret's beside it (space-separated, as the specification allows), so a
/// receiver verifying with either secret accepts the delivery.
pub fn signature_header(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let signatures: Vec<String> = secrets
        .iter()
        .filter_map(|secret| signature(secret, id, timestamp, body))
        .collect();
    (!signatures.is_empty()).then(|| signatures.join(" "))
}

/// How long to wait after failed attempt number `attempts` (1 for the first): `base` doubled
/// each time, at most [`MAX_RETRY_DELAY`].
pub fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    base.checked_mul(1 << doublings)
        .map_or(MAX_RETRY_DELAY, |delay| delay.min(MAX_RETRY_DELAY))
}

/// Whether an endpoint failing since `failing_since` is to be disabled at `now`.
pub fn should_disable(failing_since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - failing_since >= DISABLE_AFTER
}

/// A failed answer's body as the delivery log keeps it: at most [`ERROR_EXCERPT_CHARS`]
/// characters, control characters replaced, so nothing an endpoint sends is stored whole or can
/// garble a terminal.
pub fn excerpt(body: &str) -> String {
    body.chars()
        .take(ERROR_EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_example_signature() {
        // The example of the Standard Webhooks specification (spec/standard-webhooks.md).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(signature("not-a-secret", "m", 1, body), None);
    }

    #[test]
    fn a_rotation_signs_with_both_secrets() {
        let (new, old) = (new_secret().unwrap(), new_secret().unwrap());
        assert!(new.starts_with(SECRET_PREFIX) && new != old);
        let header = signature_header(&[&new, &old], "msg_1", 5, b"{}").unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            Some(parts[1].to_string()),
            signature(&old, "msg_1", 5, b"{}")
        );
    }

    #[test]
    fn retries_double_up_to_a_day() {
        let base = Duration::seconds(5);
        assert_eq!(retry_delay(base, 1), Duration::seconds(5));
        assert_eq!(retry_delay(base, 2), Duration::seconds(10));
        assert_eq!(retry_delay(base, 5), Duration::seconds(80));
        assert_eq!(retry_delay(base, 20), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(base, u32::MAX), MAX_RETRY_DELAY);
    }

    #[test]
    fn three_days_of_failure_disable_an_endpoint() {
        let since = DateTime::<Utc>::UNIX_EPOCH;
        assert!(!should_disable(
            since,
            since + Duration::days(3) - Duration::seconds(1)
        ));
        assert!(should_disable(since, since + Duration::days(3)));
    }

    #[test]
    fn excerpts_are_short_and_clean() {
        assert_eq!(excerpt("  bad\ngateway\u{1b}[2J "), "bad gateway [2J");
        assert_eq!(
            excerpt(&"x".repeat(1000)).chars().count(),
            ERROR_EXCERPT_CHARS
        );
    }
}
