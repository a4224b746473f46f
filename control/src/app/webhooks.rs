//! Webhook endpoints' operations (create with a secret shown once, change, rotate the secret,
//! delete, send a test event, read the delivery log) and the delivery bookkeeping the sender
//! calls: lease what is due, record what an attempt did, disable an endpoint failing for days.

use crate::app::alerts;
use crate::domain::alerts::{Alert, AlertKind};
use crate::domain::audit::{changed_fields, Action, Actor};
use crate::domain::clock;
use crate::domain::webhooks::{
    new_secret, retry_delay, should_disable, AttemptResult, Delivery, DeliveryStatus,
    LeasedDelivery, NewWebhook, Webhook, WebhookChanges, MAX_SECRET_GRACE_SECONDS,
};
use crate::store::db::Store;
use crate::store::sql::{Error, Result, Tx};
use crate::store::webhooks::{self, AttemptRecord};
use crate::store::{audit, teams};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use std::fmt;

#[derive(Debug)]
pub enum WebhookError {
    /// No such endpoint, or not one the caller may see.
    NotFound,
    /// The endpoint is disabled: nothing is sent to it.
    Disabled,
    Random(getrandom::Error),
    Database(Error),
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::NotFound => write!(f, "no such webhook"),
            WebhookError::Disabled => write!(
                f,
                "the webhook is disabled; enable it (PATCH enabled: true) to send to it"
            ),
            WebhookError::Random(error) => write!(f, "OS random number generator: {error}"),
            WebhookError::Database(error) => write!(f, "database: {error}"),
        }
    }
}

impl From<Error> for WebhookError {
    fn from(error: Error) -> Self {
        WebhookError::Database(error)
    }
}

impl From<getrandom::Error> for WebhookError {
    fn from(error: getrandom::Error) -> Self {
        WebhookError::Random(error)
    }
}

/// The fields an audit entry shows (never a secret).
fn fields(webhook: &Webhook) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("url".into(), json!(webhook.url));
    fields.insert("description".into(), json!(webhook.description));
    fields.insert("events".into(), json!(webhook.events));
    fields.insert("team".into(), json!(webhook.team));
    fields.insert("enabled".into(), json!(webhook.enabled));
    fields
}

fn record(
    tx: &Tx,
    actor: &Actor,
    action: Action,
    webhook: &Webhook,
    changes: &Value,
    now: DateTime<Utc>,
) -> Result<()> {
    audit::record(
        tx,
        actor,
        action,
        &webhook.id,
        webhook.team.as_deref(),
        changes,
        now,
    )
}

/// [`find_visible`] with the row locked for a change ([`webhooks::find_for_update`]).
fn find_visible_for_update(tx: &Tx, actor: &Actor, id: &str) -> Result<Webhook, WebhookError> {
    match webhooks::find_for_update(tx, id)? {
        Some(webhook) if actor.sees(webhook.team.as_deref()) => Ok(webhook),
        _ => Err(WebhookError::NotFound),
    }
}

fn find_visible(tx: &Tx, actor: &Actor, id: &str) -> Result<Webhook, WebhookError> {
    match webhooks::find(tx, id)? {
        Some(webhook) if actor.sees(webhook.team.as_deref()) => Ok(webhook),
        _ => Err(WebhookError::NotFound),
    }
}

/// Stores a new endpoint; the answer is the only place its secret is ever shown.
pub fn create(
    store: &Store,
    actor: &Actor,
    new: NewWebhook,
    now: DateTime<Utc>,
) -> Result<Webhook, WebhookError> {
    let id = format!("wh_{}", crate::domain::secrets::random_base62(20)?);
    let webhook = Webhook {
        id,
        url: new.url,
        description: new.description,
        events: new.events,
        team: new.team,
        secret: new_secret()?,
        previous_secret: None,
        previous_secret_until: None,
        enabled: true,
        disabled_reason: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    store.write_outside_feed(|tx| {
        webhooks::insert(tx, &webhook)?;
        teams::ensure(tx, webhook.team.as_deref().unwrap_or(""), now)?;
        record(
            tx,
            actor,
            Action::WebhookCreate,
            &webhook,
            &Value::Object(fields(&webhook)),
            now,
        )?;
        Ok::<_, WebhookError>(())
    })?;
    Ok(webhook)
}

/// The endpoints `actor` may see (a team token: its team's).
pub fn list(store: &Store, actor: &Actor) -> Result<Vec<Webhook>, Error> {
    store.read(|tx| webhooks::list(tx, actor.team.as_deref()))
}

pub fn show(store: &Store, actor: &Actor, id: &str) -> Result<Webhook, WebhookError> {
    store.read(|tx| find_visible(tx, actor, id))
}

/// Applies `changes`. Enabling an endpoint clears why it was disabled and its failure streak.
pub fn update(
    store: &Store,
    actor: &Actor,
    id: &str,
    changes: WebhookChanges,
    now: DateTime<Utc>,
) -> Result<Webhook, WebhookError> {
    store.write_outside_feed(|tx| {
        let mut webhook = find_visible_for_update(tx, actor, id)?;
        let before = fields(&webhook);
        if let Some(url) = changes.url {
            webhook.url = url;
        }
        if let Some(description) = changes.description {
            webhook.description = description;
        }
        if let Some(events) = changes.events {
            webhook.events = events;
        }
        if let Some(enabled) = changes.enabled {
            if enabled && !webhook.enabled {
                webhook.disabled_reason = None;
                webhook.failing_since = None;
            }
            webhook.enabled = enabled;
        }
        let after = fields(&webhook);
        if after == before {
            return Ok(webhook);
        }
        webhook.updated_at = now;
        webhooks::update(tx, &webhook)?;
        if !webhook.enabled {
            webhooks::fail_pending(tx, &webhook.id)?;
        }
        record(
            tx,
            actor,
            Action::WebhookUpdate,
            &webhook,
            &Value::Object(changed_fields(&before, after)),
            now,
        )?;
        Ok(webhook)
    })
}

/// A new signing secret; the old one keeps signing beside it for `grace_seconds`.
pub fn rotate_secret(
    store: &Store,
    actor: &Actor,
    id: &str,
    grace_seconds: u64,
    now: DateTime<Utc>,
) -> Result<Webhook, WebhookError> {
    let secret = new_secret()?;
    store.write_outside_feed(|tx| {
        let mut webhook = find_visible_for_update(tx, actor, id)?;
        let grace = Duration::seconds(
            i64::try_from(grace_seconds.min(MAX_SECRET_GRACE_SECONDS)).unwrap_or(i64::MAX),
        );
        webhook.previous_secret = Some(std::mem::replace(&mut webhook.secret, secret));
        webhook.previous_secret_until = Some(now + grace);
        webhook.updated_at = now;
        webhooks::update(tx, &webhook)?;
        let changes =
            json!({"previous_secret_until": webhook.previous_secret_until.map(clock::format)});
        record(
            tx,
            actor,
            Action::WebhookRotateSecret,
            &webhook,
            &changes,
            now,
        )?;
        Ok(webhook)
    })
}

/// Deletes the endpoint and its delivery log.
pub fn delete(
    store: &Store,
    actor: &Actor,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), WebhookError> {
    store.write_outside_feed(|tx| {
        let webhook = find_visible_for_update(tx, actor, id)?;
        webhooks::delete(tx, &webhook.id)?;
        record(tx, actor, Action::WebhookDelete, &webhook, &json!({}), now)?;
        Ok(())
    })
}

/// Queues a `webhook.test` event for the endpoint alone; returns the event id.
pub fn send_test(
    store: &Store,
    actor: &Actor,
    id: &str,
    now: DateTime<Utc>,
) -> Result<String, WebhookError> {
    store.write_outside_feed(|tx| {
        let webhook = find_visible(tx, actor, id)?;
        if !webhook.enabled {
            return Err(WebhookError::Disabled);
        }
        Ok(alerts::raise_test(tx, &webhook, now)?)
    })
}

/// The newest `limit` deliveries of the endpoint.
pub fn deliveries(
    store: &Store,
    actor: &Actor,
    id: &str,
    limit: usize,
) -> Result<Vec<Delivery>, WebhookError> {
    store.read(|tx| {
        let webhook = find_visible(tx, actor, id)?;
        Ok(webhooks::deliveries(tx, &webhook.id, limit)?)
    })
}

/// Leases up to `limit` due deliveries to this replica for `lease`.
pub fn lease_due(
    store: &Store,
    now: DateTime<Utc>,
    lease: Duration,
    limit: usize,
) -> Result<Vec<LeasedDelivery>> {
    let now_ms = now.timestamp_millis();
    store.write_outside_feed(|tx| {
        webhooks::lease_due(tx, now_ms, now_ms + lease.num_milliseconds(), limit)
    })
}

/// Records what an attempt of `delivery` did: delivered; or failed, retried after the backoff,
/// and the endpoint disabled (its pending deliveries given up, a `webhook.disabled` event
/// raised and audited) once it has failed for [`crate::domain::webhooks::DISABLE_AFTER`].
pub fn record_attempt(
    store: &Store,
    delivery: &LeasedDelivery,
    result: &AttemptResult,
    retry_base: Duration,
    now: DateTime<Utc>,
) -> Result<()> {
    store.write_outside_feed(|tx| {
        // The endpoint first, locked: every writer takes the endpoint before its deliveries.
        let Some(mut webhook) = webhooks::find_for_update(tx, &delivery.webhook.id)? else {
            return Ok(()); // deleted meanwhile, with its deliveries
        };
        let attempts = delivery.attempts.saturating_add(1);
        let (status, next, answer, error) = match result {
            AttemptResult::Delivered { status } => {
                (DeliveryStatus::Delivered, now, Some(*status), None)
            }
            AttemptResult::Failed { status, error } => (
                DeliveryStatus::Pending,
                now + retry_delay(retry_base, attempts),
                *status,
                Some(error.as_str()),
            ),
        };
        let record = AttemptRecord {
            seq: delivery.seq,
            lease_until_ms: delivery.lease_until_ms,
            status,
            attempts,
            next_attempt_ms: next.timestamp_millis(),
            at: now,
            answer,
            error,
        };
        // Given up meanwhile, or taken over by another replica after the lease lapsed: that
        // outcome stands, and this attempt tells nothing about the endpoint's streak.
        if !webhooks::record_attempt(tx, &record)? {
            return Ok(());
        }
        let was = (webhook.failing_since, webhook.enabled);
        if status == DeliveryStatus::Delivered {
            webhook.failing_since = None;
        } else {
            let since = *webhook.failing_since.get_or_insert(now);
            if webhook.enabled && should_disable(since, now) {
                return disable(tx, &mut webhook, since, now);
            }
        }
        if (webhook.failing_since, webhook.enabled) != was {
            webhooks::update(tx, &webhook)?;
        }
        Ok(())
    })
}

fn disable(tx: &Tx, webhook: &mut Webhook, since: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
    webhook.enabled = false;
    webhook.disabled_reason = Some(format!(
        "every delivery failed since {}",
        clock::format(since)
    ));
    webhook.updated_at = now;
    webhooks::update(tx, webhook)?;
    webhooks::fail_pending(tx, &webhook.id)?;
    let system = Actor {
        token_id: "keygate".into(),
        token_name: "webhook delivery".into(),
        team: None,
    };
    let changes = json!({"reason": webhook.disabled_reason, "failing_since": clock::format(since)});
    record(tx, &system, Action::WebhookDisable, webhook, &changes, now)?;
    let alert = Alert {
        kind: AlertKind::WebhookDisabled,
        occurrence: format!("webhook.disabled/{}/{}", webhook.id, clock::format(since)),
        team: webhook.team.clone(),
        data: json!({
            "webhook_id": webhook.id,
            "url": webhook.url,
            "team": webhook.team,
            "failing_since": clock::format(since),
        }),
    };
    alerts::raise_all(tx, &[alert], now)?;
    Ok(())
}

#[cfg(test)]
#[path = "webhooks/tests.rs"]
mod tests;
