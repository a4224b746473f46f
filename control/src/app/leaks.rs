//! Leaked keys: a report (GitHub secret scanning, or a person through the admin API) names
//! secrets found in public; each live key among them gets its leak recorded, is deactivated
//! under the `revoke` policy (the snapshot feed carries that to every proxy) and raises
//! `key.leaked`, all in one transaction with its audit entries (docs/security.md).

use crate::app::alerts;
use crate::app::error::LifecycleError;
use crate::app::keys::record;

use crate::domain::alerts::{key_alert, Alert, AlertKind, KeyRef};
use crate::domain::audit::{Action, Actor};
use crate::domain::keys::StoredKey;
use crate::domain::leaks::{KeyLeak, LeakPolicy};
use crate::store::db::{bump_version, Store};
use crate::store::keys;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::BTreeMap;

/// One secret reported leaked, by its hash (the secret itself goes no further than hashing).
#[derive(Debug, Clone)]
pub struct LeakReport {
    pub hash: String,
    pub leak: KeyLeak,
}

/// What a report did to one key it named.
#[derive(Debug, Clone)]
pub struct LeakOutcome {
    /// The key as it is after the report.
    pub key: StoredKey,
    /// Whether this report deactivated it (policy `revoke`, key active before).
    pub deactivated: bool,
}

/// The actor GitHub's reports are recorded under in the audit log.
pub fn github_actor() -> Actor {
    Actor {
        token_id: "github".into(),
        token_name: "GitHub secret scanning".into(),
        team: None,
    }
}

/// Applies `policy` to each live key `actor` may see among `reports`; returns what happened
/// to each, by hash. A secret of no such key is left out (the caller answers it as unknown).
pub fn report(
    store: &Store,
    actor: &Actor,
    reports: &[LeakReport],
    policy: LeakPolicy,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, LeakOutcome>, LifecycleError> {
    let mut hashes: Vec<&str> = reports.iter().map(|report| report.hash.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    store.write(|tx| {
        let mut found: BTreeMap<String, LeakOutcome> = keys::live_with_hashes(tx, &hashes)?
            .into_iter()
            .filter(|key| actor.sees(Some(&key.team)))
            .map(|key| {
                let outcome = LeakOutcome {
                    key,
                    deactivated: false,
                };
                (outcome.key.hash.clone(), outcome)
            })
            .collect();
        if found.is_empty() {
            return Ok(found);
        }
        let mut version = None;
        let mut raised: Vec<Alert> = Vec::new();
        for report in reports {
            let Some(outcome) = found.get_mut(&report.hash) else {
                continue;
            };
            let key = &mut outcome.key;
            if keys::record_leak(tx, key.seq, &report.leak)? {
                key.leak = Some(report.leak.clone());
            }
            let deactivate = policy == LeakPolicy::Revoke && key.active;
            if deactivate {
                let version = match version {
                    Some(version) => version,
                    None => *version.insert(bump_version(tx)?),
                };
                key.active = false;
                key.updated_at = now;
                key.updated_version = version;
                keys::update(tx, key)?;
                outcome.deactivated = true;
            }
            // The alert's data; the audit entry adds the token type the scanner matched.
            let extra = json!({
                "scanner": report.leak.scanner,
                "url": report.leak.url,
                "source": report.leak.source,
                "policy": policy.as_str(),
                "deactivated": deactivate,
            });
            let mut changes = extra.clone();
            changes["token_type"] = json!(report.leak.token_type);
            record(tx, actor, Action::KeyLeak, key, &changes, now)?;
            let key_ref = KeyRef::from(&*key);
            raised.push(key_alert(
                AlertKind::KeyLeaked,
                key_ref,
                &report.leak.place(),
                extra,
            ));
            if deactivate {
                let reason = json!({"reason": "leaked"});
                let instance = key.updated_version.to_string();
                raised.push(key_alert(AlertKind::KeyRevoked, key_ref, &instance, reason));
            }
        }
        alerts::raise_all(tx, &raised, now)?;
        Ok(found)
    })
}

#[cfg(test)]
#[path = "leaks/tests.rs"]
mod tests;
