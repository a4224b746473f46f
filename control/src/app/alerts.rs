//! Raising alerts: each occurrence once (a second replica or evaluation finds it raised), in
//! the transaction of what caused it, with one outbox row per endpoint that wants it, so an
//! alert is delivered if and only if its cause committed. The minute sweep raises the alerts
//! time alone causes (expiry) and forgets old refusal counts.

use crate::domain::alerts::{
    expiry_alert, implausible_report_alert, refusal_alert, Alert, AlertKind, AlertSettings, KeyRef,
    EXPIRED_ALERT_WINDOW_HOURS, EXPIRING_NOTICE_DAYS,
};
use crate::domain::clock;
use crate::domain::keys::StoredKey;
use crate::domain::plausibility::{FleetRefusal, RefusedEntry};
use crate::domain::secrets::random_base62;
use crate::domain::usage_report::{BatchOutcome, UsageBatch};
use crate::domain::webhooks::Webhook;
use crate::store::alerts as rows;
use crate::store::db::Store;
use crate::store::keys;
use crate::store::sql::{Error, Result, Tx};
use crate::store::webhooks;
use chrono::{DateTime, Duration, Utc};
use keygate_contract::fleet::WINDOW_NAMES;
use keygate_contract::usage::RATE_LIMIT_REFUSAL_CODES;
use serde_json::json;
use std::collections::BTreeMap;

/// A new event id: the `webhook-id` of every attempt of every delivery of the event.
pub fn new_event_id() -> Result<String> {
    random_base62(24)
        .map(|random| format!("msg_{random}"))
        .map_err(|error| Error::Schema(format!("random event id: {error}")))
}

/// The body every endpoint receives for `alert`.
fn body(kind: AlertKind, data: &serde_json::Value, now: DateTime<Utc>) -> String {
    json!({"type": kind.as_str(), "timestamp": clock::format(now), "data": data}).to_string()
}

/// Raises each of `alerts` not raised before and queues it for the enabled endpoints that
/// want it. Returns how many were new.
pub fn raise_all(tx: &Tx, alerts: &[Alert], now: DateTime<Utc>) -> Result<usize> {
    if alerts.is_empty() {
        return Ok(0);
    }
    let endpoints = webhooks::list(tx, None)?;
    let mut raised = 0;
    for alert in alerts {
        let id = new_event_id()?;
        let kind = alert.kind.as_str();
        let body = body(alert.kind, &alert.data, now);
        let team = alert.team.as_deref();
        if !webhooks::insert_event(tx, &id, &alert.occurrence, kind, team, &body, now)? {
            continue;
        }
        raised += 1;
        for endpoint in endpoints.iter().filter(|hook| hook.wants(kind, team)) {
            webhooks::enqueue(tx, &endpoint.id, &id, now)?;
        }
    }
    Ok(raised)
}

/// A `webhook.test` event for `endpoint` alone; returns its id.
pub fn raise_test(tx: &Tx, endpoint: &Webhook, now: DateTime<Utc>) -> Result<String> {
    let id = new_event_id()?;
    let data = json!({"webhook_id": endpoint.id, "team": endpoint.team});
    let kind = AlertKind::WebhookTest;
    let body = body(kind, &data, now);
    let occurrence = format!("{}/{id}", kind.as_str());
    let team = endpoint.team.as_deref();
    webhooks::insert_event(tx, &id, &occurrence, kind.as_str(), team, &body, now)?;
    webhooks::enqueue(tx, &endpoint.id, &id, now)?;
    Ok(id)
}

/// Counts the rate-limit refusals `batches` report (by their arrival minute) for the live keys
/// among `touched` (the keys the batches were counted for, read once by the count) and raises
/// `ratelimit.refusals` for the keys over the threshold. Cost: one upsert and one sum per key
/// with refusals in the batches.
pub fn count_refusals(
    tx: &Tx,
    batches: &[(&UsageBatch, &BatchOutcome)],
    touched: &[StoredKey],
    settings: &AlertSettings,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut refused: BTreeMap<&str, u64> = BTreeMap::new();
    // Only what was counted: not a revoked reporter's batch, nor entries refused as implausible.
    let counted = batches
        .iter()
        .filter(|(_, outcome)| !outcome.reporter_revoked)
        .flat_map(|(batch, outcome)| {
            batch.reports.iter().filter(|report| {
                !outcome.refused.iter().any(|entry| {
                    entry.key_id == report.key_id && entry.hour_start == report.hour_start
                })
            })
        });
    for report in counted {
        let count: u64 = report
            .counts
            .iter()
            .filter(|(code, _)| RATE_LIMIT_REFUSAL_CODES.contains(&code.as_str()))
            .map(|(_, count)| *count)
            .sum();
        if count > 0 {
            *refused.entry(report.key_id.as_str()).or_default() += count;
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    let minute = now.timestamp().div_euclid(60) * 60;
    let mut alerts = Vec::new();
    for key in touched {
        let Some(&count) = refused.get(key.id.as_str()) else {
            continue;
        };
        rows::add_refusals(tx, &key.id, minute, count)?;
        let in_window = rows::refusals_in_window(tx, &key.id, now)?;
        alerts.extend(refusal_alert(KeyRef::from(key), in_window, settings, now));
    }
    raise_all(tx, &alerts, now)?;
    Ok(())
}

/// Raises `proxy.implausible_report` for entries refused as implausible, by the batch that
/// carried them; counts them for `/metrics`.
pub fn implausible_reports(
    tx: &Tx,
    refused: &[(&UsageBatch, Vec<RefusedEntry>)],
    now: DateTime<Utc>,
) -> Result<()> {
    let alerts: Vec<Alert> = refused
        .iter()
        .flat_map(|(batch, entries)| {
            entries.iter().map(|entry| {
                let key = KeyRef {
                    id: &entry.key_id,
                    name: &entry.key_name,
                    team: &entry.team,
                };
                let refused = json!({
                    "proxy_id": batch.proxy_id, "hour_start": entry.hour_start,
                    "claimed": entry.claimed, "bound": entry.bound, "reason": entry.reason,
                });
                implausible_report_alert(key, entry.hour_start, refused)
            })
        })
        .collect();
    IMPLAUSIBLE_ENTRIES.fetch_add(alerts.len() as u64, std::sync::atomic::Ordering::Relaxed);
    raise_all(tx, &alerts, now)?;
    Ok(())
}

/// Raises `proxy.implausible_report` for fleet-sync counts refused as implausible
/// (`fleet::bounds`): once per key and hour like a report's, naming the proxy, the window and
/// what it claimed. Tags of no live key raise nothing. Answers how many were raised.
pub fn implausible_fleet_counts(
    store: &Store,
    refused: &[FleetRefusal],
    now: DateTime<Utc>,
) -> Result<usize> {
    let hour_start = now.timestamp().div_euclid(3600) * 3600;
    let mut by_tag: BTreeMap<&str, &FleetRefusal> = BTreeMap::new();
    for refusal in refused {
        by_tag
            .entry(refusal.refused.key.as_str())
            .or_insert(refusal);
    }
    store.write(|tx| {
        let mut alerts = Vec::new();
        for (tag, refusal) in by_tag {
            let Some(key) = keys::live_with_tag(tx, tag)? else {
                continue;
            };
            let window = WINDOW_NAMES.get(refusal.refused.window).copied().unwrap_or("?");
            let data = json!({
                "proxy_id": refusal.proxy_id, "hour_start": hour_start,
                "claimed": refusal.refused.claimed, "bound": refusal.refused.bound,
                "window": window,
                "reason": format!("a fleet sync counted more in a {window} than one Envoy can admit"),
            });
            alerts.push(implausible_report_alert(KeyRef::from(&key), hour_start, data));
        }
        raise_all(tx, &alerts, now)?;
        Ok(alerts.len())
    })
}

/// Report entries refused as implausible since start (`keygate_control_usage_implausible_entries_total`).
pub static IMPLAUSIBLE_ENTRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Days raised events and their delivery logs are kept: longer than a month, so a monthly
/// quota alert's occurrence is remembered until its month ends (else it would fire again).
pub const EVENT_RETENTION_DAYS: i64 = 35;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Keys near or just past their expiry that were looked at.
    pub checked: usize,
    pub raised: usize,
}

/// The minute sweep: `key.expiring` and `key.expired` for the keys whose expiry is near or
/// just passed (read through the expiry index: cost proportional to those keys, not to all),
/// and old refusal counts forgotten.
pub fn sweep(store: &Store, now: DateTime<Utc>) -> Result<Swept> {
    store.write_outside_feed(|tx| {
        let latest_notice = EXPIRING_NOTICE_DAYS.into_iter().max().unwrap_or(7);
        let from = now - Duration::hours(EXPIRED_ALERT_WINDOW_HOURS);
        let to = now + Duration::days(latest_notice);
        let near = rows::expiring(tx, from, to)?;
        let alerts: Vec<Alert> = near
            .iter()
            .filter_map(|row| {
                let key = KeyRef {
                    id: &row.id,
                    name: &row.name,
                    team: &row.team,
                };
                expiry_alert(key, row.expires_at, now)
            })
            .collect();
        let raised = raise_all(tx, &alerts, now)?;
        rows::prune_refusals(tx, now)?;
        webhooks::prune(tx, now - Duration::days(EVENT_RETENTION_DAYS))?;
        Ok(Swept {
            checked: near.len(),
            raised,
        })
    })
}
