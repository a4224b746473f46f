//! The webhook bodies of the admin API (`/v1/webhooks`) and their views. A view carries the
//! signing secret only in the answer that made it (create, rotate).

use crate::domain::alerts::AlertKind;
use crate::domain::clock;
use crate::domain::webhook_url::{check_url, UrlPolicy};
use crate::domain::webhooks::{Delivery, NewWebhook, Webhook, WebhookChanges};
use chrono::DateTime;
use keygate_contract::FieldError;
use serde::{Deserialize, Serialize};

/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 256;

/// Body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    pub url: String,
    pub events: Vec<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub description: String,
}

/// Body of `PATCH /v1/webhooks/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Body of `POST /v1/webhooks/{id}/rotate-secret` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {
    #[serde(default)]
    pub grace_seconds: Option<u64>,
}

/// The URL's form; whether its name resolves to an allowed address is checked by the caller
/// (it needs a DNS lookup).
pub fn url(text: String, policy: UrlPolicy) -> Result<String, FieldError> {
    check_url(&text, policy)
        .map(|url| url.to_string())
        .map_err(|message| FieldError::new("url", message))
}

/// Subscribable event names, none twice, at least one.
pub fn events(names: Vec<String>) -> Result<Vec<String>, FieldError> {
    if names.is_empty() {
        return Err(FieldError::new(
            "events",
            "must name at least one event type",
        ));
    }
    let mut checked: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        match AlertKind::parse(&name) {
            Some(kind) if AlertKind::SUBSCRIBABLE.contains(&kind) => {}
            _ => {
                let known: Vec<&str> = AlertKind::SUBSCRIBABLE
                    .iter()
                    .map(|kind| kind.as_str())
                    .collect();
                return Err(FieldError::new(
                    "events",
                    format!("unknown event type {name:?}; one of {}", known.join(", ")),
                ));
            }
        }
        if !checked.contains(&name) {
            checked.push(name);
        }
    }
    Ok(checked)
}

fn description(text: String) -> Result<String, FieldError> {
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(FieldError::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    crate::wire::validate::printable("description", text)
}

pub fn validate_new_webhook(
    request: CreateWebhookRequest,
    policy: UrlPolicy,
) -> Result<NewWebhook, FieldError> {
    Ok(NewWebhook {
        url: url(request.url, policy)?,
        description: description(request.description)?,
        events: events(request.events)?,
        team: request
            .team
            .map(crate::wire::validate::team)
            .transpose()?
            .filter(|team| !team.is_empty()),
    })
}

pub fn validate_webhook_changes(
    request: UpdateWebhookRequest,
    policy: UrlPolicy,
) -> Result<WebhookChanges, FieldError> {
    Ok(WebhookChanges {
        url: request.url.map(|text| url(text, policy)).transpose()?,
        description: request.description.map(description).transpose()?,
        events: request.events.map(events).transpose()?,
        enabled: request.enabled,
    })
}

/// An endpoint as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub team: Option<String>,
    pub enabled: bool,
    /// Why it was disabled (e.g. every delivery failed for 3 days).
    pub disabled_reason: Option<String>,
    /// First failed delivery since the last success.
    pub failing_since: Option<String>,
    /// Until when the previous secret still signs beside the current one.
    pub previous_secret_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The signing secret (`whsec_…`): only in the answer that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookView {
    pub fn of(webhook: Webhook, show_secret: bool) -> WebhookView {
        WebhookView {
            secret: show_secret.then(|| webhook.secret.clone()),
            id: webhook.id,
            url: webhook.url,
            description: webhook.description,
            events: webhook.events,
            team: webhook.team,
            enabled: webhook.enabled,
            disabled_reason: webhook.disabled_reason,
            failing_since: webhook.failing_since.map(clock::format),
            previous_secret_until: webhook.previous_secret_until.map(clock::format),
            created_at: clock::format(webhook.created_at),
            updated_at: clock::format(webhook.updated_at),
        }
    }
}

/// `GET /v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// One delivery in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    /// The event id: the `webhook-id` header of every attempt.
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// `pending`, `delivered` or `failed` (given up: the endpoint was disabled).
    pub status: String,
    pub attempts: u32,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    /// The HTTP status of the last answer (null: none, e.g. a timeout or a refused address).
    pub last_status: Option<u16>,
    /// A short, cleaned excerpt of what went wrong last.
    pub last_error: Option<String>,
    pub created_at: String,
}

impl From<Delivery> for DeliveryView {
    fn from(delivery: Delivery) -> Self {
        let pending = delivery.status == crate::domain::webhooks::DeliveryStatus::Pending;
        DeliveryView {
            event_id: delivery.event_id,
            event_type: delivery.event_type,
            status: delivery.status.as_str().into(),
            attempts: delivery.attempts,
            next_attempt_at: pending
                .then(|| {
                    DateTime::from_timestamp_millis(delivery.next_attempt_ms).map(clock::format)
                })
                .flatten(),
            last_attempt_at: delivery.last_attempt_at.map(clock::format),
            last_status: delivery.last_status,
            last_error: delivery.last_error,
            created_at: clock::format(delivery.created_at),
        }
    }
}

/// `GET /v1/webhooks/{id}/deliveries`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

/// `POST /v1/webhooks/{id}/test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestQueued {
    pub event_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_bodies_are_checked() {
        let strict = UrlPolicy::default();
        let create = |body: serde_json::Value| {
            validate_new_webhook(serde_json::from_value(body).unwrap(), strict)
                .map_err(|e| e.to_string())
        };
        let ok = create(serde_json::json!({
            "url": "https://hooks.example.com/k",
            "events": ["quota.threshold", "key.revoked", "quota.threshold"],
            "team": ""
        }))
        .unwrap();
        assert_eq!(ok.events, ["quota.threshold", "key.revoked"]);
        assert_eq!(ok.team, None);
        for (body, expected) in [
            (
                serde_json::json!({"url": "http://hooks.example.com", "events": ["key.created"]}),
                "url:",
            ),
            (
                serde_json::json!({"url": "https://127.0.0.1", "events": ["key.created"]}),
                "url:",
            ),
            (
                serde_json::json!({"url": "https://a.example", "events": []}),
                "events:",
            ),
            (
                serde_json::json!({"url": "https://a.example", "events": ["webhook.test"]}),
                "events:",
            ),
            (
                serde_json::json!({"url": "https://a.example", "events": ["key.created"], "description": "a\u{7}"}),
                "description:",
            ),
        ] {
            let error = create(body.clone()).unwrap_err();
            assert!(error.starts_with(expected), "{body}: {error}");
        }
    }
}
