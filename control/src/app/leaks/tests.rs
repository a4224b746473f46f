//! Leak reports on a real (temporary) database.

use super::*;
use crate::app;
use crate::app::test_keys::minted_in_team;
use crate::domain::clock;
use crate::store::db::temp_store;
use keygate_contract::key_hash::hash_key;

fn reported(secret: &str, url: &str, now: DateTime<Utc>) -> LeakReport {
    LeakReport {
        hash: hash_key(secret),
        leak: KeyLeak::new("github", Some(url), Some("content"), Some("keygate"), now),
    }
}

fn count(store: &Store, sql: &str, arg: &str) -> i64 {
    store
        .read(|tx| tx.query_row(sql, [arg], |row| row.get(0)))
        .unwrap()
}

#[test]
fn revoke_deactivates_records_the_first_report_audits_and_alerts_once_per_place() {
    let (store, _dir) = temp_store("leaks", "revoke");
    let now = clock::parse("2026-12-07T10:00:00Z").unwrap();
    let key = minted_in_team(&store, "acme", now);
    let other = minted_in_team(&store, "acme", now);
    let reports = [
        reported(&key.secret, "https://github.com/o/r/blob/1/a.env", now),
        reported(&key.secret, "https://github.com/o/r/blob/1/b.env", now),
        reported("pk_live_never_issued", "https://x", now),
    ];
    let github = github_actor();
    let outcome = report(&store, &github, &reports, LeakPolicy::Revoke, now).unwrap();
    assert_eq!(outcome.len(), 1, "only the key Keygate knows");
    let found = &outcome[&key.key.hash];
    assert!(found.deactivated && !found.key.active);
    let stored = store
        .read(|tx| keys::find(tx, &key.key.id))
        .unwrap()
        .unwrap();
    assert!(!stored.active);
    assert!(stored.updated_version > key.key.updated_version);
    let leak = stored.leak.unwrap();
    assert_eq!(
        leak.url.as_deref(),
        Some("https://github.com/o/r/blob/1/a.env"),
        "the first report is kept"
    );
    assert!(
        store
            .read(|tx| keys::find(tx, &other.key.id))
            .unwrap()
            .unwrap()
            .active
    );
    let leaked_alerts = "SELECT COUNT(*) FROM alert_events WHERE type = ?1";
    assert_eq!(
        count(&store, leaked_alerts, "key.leaked"),
        2,
        "one per place"
    );
    assert_eq!(count(&store, leaked_alerts, "key.revoked"), 1);
    let audited = "SELECT COUNT(*) FROM audit_log WHERE action = ?1";
    assert_eq!(count(&store, audited, "key.leak"), 2);

    // The same report again: nothing new is raised, the key stays off.
    let again = report(&store, &github, &reports, LeakPolicy::Revoke, now).unwrap();
    assert!(!again[&key.key.hash].deactivated);
    assert_eq!(count(&store, leaked_alerts, "key.leaked"), 2);

    // A leaked key cannot be turned back on, only rotated.
    let turn_on = crate::domain::keys::KeyChanges {
        active: Some(true),
        ..Default::default()
    };
    let refused = app::keys::update(&store, &Actor::bootstrap(), &key.key.id, turn_on, now);
    assert!(
        matches!(refused, Err(LifecycleError::Leaked)),
        "{refused:?}"
    );
    let rotated = app::keys::rotate(&store, &Actor::bootstrap(), &key.key.id, 0, now).unwrap();
    let successor = store
        .read(|tx| keys::find(tx, &rotated.key.id))
        .unwrap()
        .unwrap();
    assert!(
        successor.active && successor.leak.is_none(),
        "a new secret, never leaked"
    );
}

#[test]
fn notify_records_and_alerts_but_leaves_the_key_working() {
    let (store, _dir) = temp_store("leaks", "notify");
    let now = clock::parse("2026-12-07T10:00:00Z").unwrap();
    let key = minted_in_team(&store, "", now);
    let reports = [reported(&key.secret, "https://npm/x", now)];
    let outcome = report(&store, &github_actor(), &reports, LeakPolicy::Notify, now).unwrap();
    let found = &outcome[&key.key.hash];
    assert!(!found.deactivated && found.key.active);
    assert!(found.key.leak.is_some());
    let stored = store
        .read(|tx| keys::find(tx, &key.key.id))
        .unwrap()
        .unwrap();
    assert!(stored.active && stored.leak.is_some());
    assert_eq!(
        stored.updated_version, key.key.updated_version,
        "no feed change"
    );
    let alerts = "SELECT COUNT(*) FROM alert_events WHERE type = ?1";
    assert_eq!(count(&store, alerts, "key.leaked"), 1);
    assert_eq!(count(&store, alerts, "key.revoked"), 0);
}

#[test]
fn a_team_actor_reports_only_its_teams_keys() {
    let (store, _dir) = temp_store("leaks", "team");
    let now = clock::parse("2026-12-07T10:00:00Z").unwrap();
    let theirs = minted_in_team(&store, "globex", now);
    let editor = Actor {
        token_id: "tok_1".into(),
        token_name: "acme editor".into(),
        team: Some("acme".into()),
    };
    let reports = [reported(&theirs.secret, "https://x", now)];
    let outcome = report(&store, &editor, &reports, LeakPolicy::Revoke, now).unwrap();
    assert!(outcome.is_empty());
    let stored = store
        .read(|tx| keys::find(tx, &theirs.key.id))
        .unwrap()
        .unwrap();
    assert!(stored.active && stored.leak.is_none());
}
