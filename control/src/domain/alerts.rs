//! Alerts as pure functions: the kinds of event a webhook may subscribe to, and when a quota,
//! an expiry or a flood of refusals raises one. Each alert names its occurrence (what it is
//! about and for which period), so raising it again is a no-op (docs/webhooks.md).

use crate::domain::clock;
use crate::domain::keys::StoredKey;
use crate::domain::plans::Quotas;
use crate::domain::quota::{self, QuotaUsage};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

/// What happened, as a webhook's `events` list names it and a delivery's `type` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    QuotaThreshold,
    QuotaExceeded,
    RatelimitRefusals,
    KeyExpiring,
    KeyExpired,
    KeyCreated,
    KeyRevoked,
    KeyRotated,
    KeyDeleted,
    KeyLeaked,
    ProxyImplausibleReport,
    WebhookDisabled,
    /// Sent by "send a test event" to one endpoint, whatever it subscribes to.
    WebhookTest,
}

impl AlertKind {
    /// The kinds a webhook may subscribe to.
    pub const SUBSCRIBABLE: [AlertKind; 12] = [
        AlertKind::QuotaThreshold,
        AlertKind::QuotaExceeded,
        AlertKind::RatelimitRefusals,
        AlertKind::KeyExpiring,
        AlertKind::KeyExpired,
        AlertKind::KeyCreated,
        AlertKind::KeyRevoked,
        AlertKind::KeyRotated,
        AlertKind::KeyDeleted,
        AlertKind::KeyLeaked,
        AlertKind::ProxyImplausibleReport,
        AlertKind::WebhookDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::QuotaThreshold => "quota.threshold",
            AlertKind::QuotaExceeded => "quota.exceeded",
            AlertKind::RatelimitRefusals => "ratelimit.refusals",
            AlertKind::KeyExpiring => "key.expiring",
            AlertKind::KeyExpired => "key.expired",
            AlertKind::KeyCreated => "key.created",
            AlertKind::KeyRevoked => "key.revoked",
            AlertKind::KeyRotated => "key.rotated",
            AlertKind::KeyDeleted => "key.deleted",
            AlertKind::KeyLeaked => "key.leaked",
            AlertKind::ProxyImplausibleReport => "proxy.implausible_report",
            AlertKind::WebhookDisabled => "webhook.disabled",
            AlertKind::WebhookTest => "webhook.test",
        }
    }

    pub fn parse(name: &str) -> Option<AlertKind> {
        Self::SUBSCRIBABLE
            .into_iter()
            .chain([AlertKind::WebhookTest])
            .find(|kind| kind.as_str() == name)
    }
}

/// An alert to raise: at most once per `occurrence`, to the endpoints of its team (and those
/// of no team).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub kind: AlertKind,
    /// Names this occurrence; a second alert with the same name is not raised.
    pub occurrence: String,
    /// The team of what it is about (`None`: no team).
    pub team: Option<String>,
    /// The delivery body's `data`: ids, names, team, numbers; never a secret.
    pub data: Value,
}

/// The alert settings `serve` is started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertSettings {
    /// `quota.threshold` fires when a quota's use reaches this percentage (1–99).
    pub quota_percent: u8,
    /// `ratelimit.refusals` fires when a key is refused more than this many times in
    /// [`REFUSAL_WINDOW_MINUTES`].
    pub refusals: u64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            quota_percent: 80,
            refusals: 100,
        }
    }
}

/// The window `ratelimit.refusals` counts over.
pub const REFUSAL_WINDOW_MINUTES: i64 = 5;

/// A key as its alerts name it.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// `""`: no team.
    pub team: &'a str,
}

impl<'a> From<&'a StoredKey> for KeyRef<'a> {
    fn from(key: &'a StoredKey) -> Self {
        KeyRef {
            id: &key.id,
            name: &key.name,
            team: &key.team,
        }
    }
}

impl KeyRef<'_> {
    fn fields(&self) -> Value {
        json!({"key_id": self.id, "key_name": self.name, "team": team_or_null(self.team)})
    }

    fn team(&self) -> Option<String> {
        Some(self.team)
            .filter(|team| !team.is_empty())
            .map(String::from)
    }
}

/// What a quota belongs to.
#[derive(Debug, Clone, Copy)]
pub enum QuotaOwner<'a> {
    Key(KeyRef<'a>),
    Team { name: &'a str },
}

impl QuotaOwner<'_> {
    fn describe(&self) -> (String, Value, Option<String>) {
        match *self {
            QuotaOwner::Key(key) => {
                let mut fields = key.fields();
                if let Value::Object(map) = &mut fields {
                    map.insert("subject".into(), Value::from("key"));
                }
                (format!("key/{}", key.id), fields, key.team())
            }
            QuotaOwner::Team { name } => (
                format!("team/{name}"),
                json!({"subject": "team", "team": name}),
                Some(name.to_string()),
            ),
        }
    }
}

fn team_or_null(team: &str) -> Value {
    if team.is_empty() {
        Value::Null
    } else {
        Value::from(team)
    }
}

/// The smallest use that reaches `percent` of `quota` (at least 1).
fn threshold_of(quota: u64, percent: u8) -> u64 {
    (u128::from(quota) * u128::from(percent))
        .div_ceil(100)
        .max(1)
        .try_into()
        .unwrap_or(u64::MAX)
}

/// The quota alerts `owner`'s use calls for now: for each of the day's and the month's quota,
/// `quota.threshold` once its use reaches `settings.quota_percent` and `quota.exceeded` once it
/// reaches the quota, each once per period.
pub fn quota_alerts(
    owner: QuotaOwner,
    quotas: Quotas,
    usage: QuotaUsage,
    settings: &AlertSettings,
    now: DateTime<Utc>,
) -> Vec<Alert> {
    let (subject, base, team) = owner.describe();
    let [(day_start, day_end), (month_start, month_end)] = quota::periods(now);
    let periods = [
        ("day", quotas.per_day, usage.today, day_start, day_end),
        (
            "month",
            quotas.per_month,
            usage.this_month,
            month_start,
            month_end,
        ),
    ];
    let mut alerts = Vec::new();
    for (period, quota, used, start, end) in periods {
        let Some(quota) = quota else { continue };
        let steps = [
            (
                AlertKind::QuotaThreshold,
                threshold_of(quota, settings.quota_percent),
            ),
            (AlertKind::QuotaExceeded, quota),
        ];
        for (kind, reached_at) in steps {
            if used < reached_at {
                continue;
            }
            let mut data = base.clone();
            if let Value::Object(fields) = &mut data {
                fields.insert("period".into(), Value::from(period));
                fields.insert("quota".into(), Value::from(quota));
                fields.insert("used".into(), Value::from(used));
                fields.insert(
                    "threshold_percent".into(),
                    Value::from(settings.quota_percent),
                );
                fields.insert("resets_at".into(), Value::from(clock::format(end)));
            }
            alerts.push(Alert {
                kind,
                // The quota is part of it: a quota raised within the period alerts again at
                // its new value.
                occurrence: format!(
                    "{}/{subject}/{period}/{}/{quota}",
                    kind.as_str(),
                    start.timestamp()
                ),
                team: team.clone(),
                data,
            });
        }
    }
    alerts
}

/// How long after expiry `key.expired` is still raised: a sweep that missed it for longer (the
/// service was down) does not raise it late, and keys long expired before alerts existed do not
/// flood new endpoints.
pub const EXPIRED_ALERT_WINDOW_HOURS: i64 = 24;
/// `key.expiring` is raised this many days before expiry, the nearest first.
pub const EXPIRING_NOTICE_DAYS: [i64; 2] = [1, 7];

/// The expiry alert `key` calls for now, if any: `key.expired` within a day of its expiry, else
/// `key.expiring` for the nearest notice it is within (a key created 12 hours before its expiry
/// gets the 1-day notice only). The occurrence includes the expiry, so a changed expiry alerts
/// again.
pub fn expiry_alert(key: KeyRef, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Alert> {
    let expires = clock::format(expires_at);
    let mut base = key.fields();
    if let Value::Object(fields) = &mut base {
        fields.insert("expires_at".into(), Value::from(expires.clone()));
    }
    let team = key.team();
    if expires_at <= now {
        if now - expires_at > Duration::hours(EXPIRED_ALERT_WINDOW_HOURS) {
            return None;
        }
        return Some(Alert {
            kind: AlertKind::KeyExpired,
            occurrence: format!("key.expired/{}/{expires}", key.id),
            team,
            data: base,
        });
    }
    let days = EXPIRING_NOTICE_DAYS
        .into_iter()
        .find(|days| expires_at - now <= Duration::days(*days))?;
    let mut data = base;
    if let Value::Object(fields) = &mut data {
        fields.insert("days_before".into(), Value::from(days));
    }
    Some(Alert {
        kind: AlertKind::KeyExpiring,
        occurrence: format!("key.expiring/{}/{days}d/{expires}", key.id),
        team,
        data,
    })
}

/// `ratelimit.refusals` for a key refused `refused` times in the window ending at `now`, if that
/// is more than allowed. At most one a key per window: the occurrence is the window's number.
pub fn refusal_alert(
    key: KeyRef,
    refused: u64,
    settings: &AlertSettings,
    now: DateTime<Utc>,
) -> Option<Alert> {
    if refused <= settings.refusals {
        return None;
    }
    let window = now.timestamp().div_euclid(REFUSAL_WINDOW_MINUTES * 60);
    Some(Alert {
        kind: AlertKind::RatelimitRefusals,
        occurrence: format!("ratelimit.refusals/{}/{window}", key.id),
        team: key.team(),
        data: {
            let mut data = key.fields();
            if let Value::Object(fields) = &mut data {
                fields.insert("refused".into(), Value::from(refused));
                fields.insert("window_minutes".into(), Value::from(REFUSAL_WINDOW_MINUTES));
                fields.insert("threshold".into(), Value::from(settings.refusals));
            }
            data
        },
    })
}

/// A key's lifecycle alert (`key.created`, `key.revoked`, `key.rotated`, `key.deleted`,
/// `key.leaked`): `instance` tells this occurrence from an earlier one of the same kind (a key
/// revoked, restored and revoked again alerts twice); `extra` adds fields to `data`.
pub fn key_alert(kind: AlertKind, key: KeyRef, instance: &str, extra: Value) -> Alert {
    let mut data = key.fields();
    if let (Value::Object(fields), Value::Object(extra)) = (&mut data, extra) {
        fields.extend(extra);
    }
    Alert {
        kind,
        occurrence: format!("{}/{}/{instance}", kind.as_str(), key.id),
        team: key.team(),
        data,
    }
}

/// `proxy.implausible_report`: a proxy reported more allowed requests of a key in an hour than
/// any proxy could have let through (`domain::plausibility`). Once per key and hour, whichever
/// proxy ids a forger uses.
/// `refused` adds what was refused (`proxy_id`, `hour_start` (Unix seconds), `claimed`, `bound`,
/// `reason`) to the key's fields.
pub fn implausible_report_alert(key: KeyRef, hour_start: i64, refused: Value) -> Alert {
    let mut data = key.fields();
    if let (Value::Object(fields), Value::Object(refused)) = (&mut data, refused) {
        fields.extend(refused);
    }
    Alert {
        kind: AlertKind::ProxyImplausibleReport,
        occurrence: format!(
            "{}/{}/{hour_start}",
            AlertKind::ProxyImplausibleReport.as_str(),
            key.id
        ),
        team: key.team(),
        data,
    }
}

#[cfg(test)]
#[path = "alerts/tests.rs"]
mod tests;
