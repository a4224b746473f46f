//! Quota marks on key rows: recomputed from the usage rows whenever usage arrives or a key's,
//! a plan's or a team's quotas change, and versioned like any other key change so proxies get
//! them in deltas. A key's mark is the later of its own quotas' and its team's shared quotas'
//! (the tighter one wins). The same reading raises the quota alerts.

use crate::app::alerts;
use crate::domain::alerts::{quota_alerts, AlertSettings, KeyRef, QuotaOwner};
use crate::domain::keys::StoredKey;
use crate::domain::plans::{effective_quotas, Quotas};
use crate::domain::quota::{self, QuotaUsage};
use crate::domain::teams::team_quotas;
use crate::store::db::bump_version;
use crate::store::sql::{Result, Tx};
use crate::store::usage::allowed_sums;
use crate::store::{keys, teams};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Until when `key` is over its own or its team's quotas given the usage stored so far.
pub fn current_mark(tx: &Tx, key: &StoredKey, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let reading = read(tx, std::slice::from_ref(key), now)?;
    Ok(reading.mark(0, key, now))
}

/// Recomputes the marks of `touched` and of every live key sharing a team quota with one of
/// them; the keys whose mark is set, moved or cleared get one new version between them (as any
/// key change does). Raises the quota alerts of `touched` and of their teams. Returns how many
/// marks changed.
///
/// Cost: one usage statement per 500 touched keys with a quota, one per team with a quota, and
/// a read of the live keys of those teams (bench-alerts: about 5 µs per team key on SQLite).
pub fn refresh_marks(
    tx: &Tx,
    touched: &[StoredKey],
    now: DateTime<Utc>,
    settings: &AlertSettings,
) -> Result<usize> {
    let (keys_to_mark, reading) = with_team_members(tx, touched, now)?;
    let mut raised = Vec::new();
    for (key, (quotas, usage)) in touched.iter().zip(&reading.keys) {
        let owner = QuotaOwner::Key(KeyRef::from(key));
        raised.extend(quota_alerts(owner, *quotas, *usage, settings, now));
    }
    for (team, (quotas, usage)) in &reading.teams {
        let owner = QuotaOwner::Team { name: team };
        raised.extend(quota_alerts(owner, *quotas, *usage, settings, now));
    }
    alerts::raise_all(tx, &raised, now)?;
    write_marks(tx, &keys_to_mark, &reading, now)
}

/// [`refresh_marks`] without alerts, for changes that move use between teams rather than add
/// to it (a key moved to another team).
pub fn remark(tx: &Tx, keys: &[StoredKey], now: DateTime<Utc>) -> Result<usize> {
    let (keys_to_mark, reading) = with_team_members(tx, keys, now)?;
    write_marks(tx, &keys_to_mark, &reading, now)
}

/// `keys` followed by the other live keys of their teams that have quotas, and the reading of
/// all of them.
fn with_team_members(
    tx: &Tx,
    keys: &[StoredKey],
    now: DateTime<Utc>,
) -> Result<(Vec<StoredKey>, Reading)> {
    let mut reading = read(tx, keys, now)?;
    let mut all: Vec<StoredKey> = keys.to_vec();
    let mut seen: HashSet<String> = keys.iter().map(|key| key.id.clone()).collect();
    for team in reading.teams.keys() {
        for member in keys::of_team(tx, team)? {
            if seen.insert(member.id.clone()) {
                all.push(member);
            }
        }
    }
    if all.len() > keys.len() {
        let members = &all[keys.len()..];
        let extra = read_keys(tx, members, now)?;
        reading.keys.extend(extra);
    }
    Ok((all, reading))
}

/// Writes the marks of `keys` (in the reading's order) that changed, under one new version.
fn write_marks(
    tx: &Tx,
    keys: &[StoredKey],
    reading: &Reading,
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut version = None;
    let mut changed = 0;
    for (index, key) in keys.iter().enumerate() {
        let mark = reading.mark(index, key, now);
        // A lapsed mark is as good as none: the filter already ignores it, so no new version.
        if mark == quota::mark_in_force(key.quota_exceeded_until, now) {
            continue;
        }
        let version = match version {
            Some(version) => version,
            None => *version.insert(bump_version(tx)?),
        };
        keys::set_quota_mark(tx, key.seq, mark, version)?;
        changed += 1;
    }
    Ok(changed)
}

/// The quotas and use of a list of keys (in order) and of their teams that have quotas.
struct Reading {
    keys: Vec<(Quotas, QuotaUsage)>,
    /// Ordered, so alerts are raised in the same order every time.
    teams: BTreeMap<String, (Quotas, QuotaUsage)>,
}

impl Reading {
    /// The mark of the key at `index` (which is `key`): the later of its own and its team's.
    fn mark(&self, index: usize, key: &StoredKey, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let own = self
            .keys
            .get(index)
            .and_then(|(quotas, usage)| quota::exceeded_until(now, *quotas, *usage));
        let team = self
            .teams
            .get(&key.team)
            .and_then(|(quotas, usage)| quota::exceeded_until(now, *quotas, *usage));
        own.max(team)
    }
}

fn usage_of(sums: &HashMap<String, [u64; 2]>, name: &str) -> QuotaUsage {
    let [today, this_month] = sums.get(name).copied().unwrap_or_default();
    QuotaUsage { today, this_month }
}

/// Reads the usage of `keys` with a quota and of their teams with a quota.
fn read(tx: &Tx, keys: &[StoredKey], now: DateTime<Utc>) -> Result<Reading> {
    let periods = quota::periods(now);
    let key_use = read_keys(tx, keys, now)?;
    let mut team_quota: BTreeMap<String, Quotas> = BTreeMap::new();
    let names: HashSet<&str> = keys
        .iter()
        .map(|key| key.team.as_str())
        .filter(|team| !team.is_empty())
        .collect();
    for name in names {
        if let Some(team) = teams::find(tx, name)? {
            let shared = team_quotas(team.quotas, teams::plan_limits(tx, &team)?.as_ref());
            if shared.any() {
                team_quota.insert(team.name, shared);
            }
        }
    }
    let team_names: Vec<&str> = team_quota.keys().map(String::as_str).collect();
    let team_sums = teams::allowed_sums(tx, &team_names, periods)?;
    Ok(Reading {
        keys: key_use,
        teams: team_quota
            .into_iter()
            .map(|(name, quotas)| {
                let usage = usage_of(&team_sums, &name);
                (name, (quotas, usage))
            })
            .collect(),
    })
}

/// The quotas and use of each of `keys`, in order (one read of those with a quota).
fn read_keys(tx: &Tx, keys: &[StoredKey], now: DateTime<Utc>) -> Result<Vec<(Quotas, QuotaUsage)>> {
    let periods = quota::periods(now);
    let quotas: Vec<Quotas> = keys
        .iter()
        .map(|key| effective_quotas(&key.plan_limits, &key.limits))
        .collect();
    // Enterprise keys and others without a quota need no sums.
    let with_quota: Vec<&str> = keys
        .iter()
        .zip(&quotas)
        .filter(|(_, quotas)| quotas.any())
        .map(|(key, _)| key.id.as_str())
        .collect();
    let sums = if with_quota.is_empty() {
        HashMap::new()
    } else {
        allowed_sums(tx, &with_quota, periods)?
    };
    Ok(keys
        .iter()
        .zip(quotas)
        .map(|(key, quotas)| (quotas, usage_of(&sums, &key.id)))
        .collect())
}
