//! Teams as data and their shared quotas, on a real (temporary) database.

use super::*;
use crate::app;
use crate::app::test_keys::key_in_team;
use crate::app::usage::record_group;
use crate::domain::clock;
use crate::domain::keys::StoredKey;
use crate::domain::plans::{Plan, Quotas};
use crate::domain::usage_report::{HourlyUsage, UsageBatch, ALLOWED_CODE};
use crate::store::db::temp_store;

fn report(store: &Store, batch_id: &str, key: &StoredKey, allowed: u64, now: DateTime<Utc>) {
    let batch = UsageBatch {
        reporter: None,
        proxy_id: "p1".into(),
        batch_id: batch_id.into(),
        reports: vec![HourlyUsage {
            key_id: key.id.clone(),
            hour_start: now.timestamp() / 3600 * 3600,
            counts: vec![(ALLOWED_CODE.into(), allowed)],
            events: vec![],
            ip_registers: vec![],
        }],
    };
    record_group(
        store,
        &[batch],
        now,
        &AlertSettings::default(),
        crate::domain::plausibility::DEFAULT_MAX_PROXY_RATE,
    )
    .unwrap();
}

fn mark_of(store: &Store, key: &StoredKey) -> Option<DateTime<Utc>> {
    store
        .read(|tx| keys::find(tx, &key.id))
        .unwrap()
        .unwrap()
        .quota_exceeded_until
}

fn occurrences(store: &Store, kind: &str) -> Vec<String> {
    store
        .read(|tx| {
            tx.query_map(
                "SELECT occurrence FROM alert_events WHERE type = ?1 ORDER BY seq",
                [kind],
                |row| row.get(0),
            )
        })
        .unwrap()
}

#[test]
fn a_team_quota_is_shared_by_its_keys_and_lifted_by_raising_it() {
    let (store, dir) = temp_store("teams", "shared_quota");
    let now = clock::now();
    let actor = Actor::bootstrap();
    let first = key_in_team(&store, "acme", now);
    let second = key_in_team(&store, "acme", now);
    let outsider = key_in_team(&store, "other", now);
    // Keys naming a team create it (existing team strings became teams on migration).
    let listed: Vec<String> = list(&store, &actor, now)
        .unwrap()
        .into_iter()
        .map(|detail| detail.team.name)
        .collect();
    assert_eq!(listed, ["acme", "other"]);
    let changes = TeamChanges {
        per_day: Some(Some(10)),
        ..TeamChanges::default()
    };
    update(
        &store,
        &actor,
        "acme",
        &changes,
        now,
        &AlertSettings::default(),
    )
    .unwrap();
    report(&store, "b1", &first, 6, now);
    assert_eq!(mark_of(&store, &second), None);
    assert_eq!(occurrences(&store, "quota.threshold"), Vec::<String>::new());
    report(&store, "b2", &first, 2, now);
    assert_eq!(occurrences(&store, "quota.threshold").len(), 1);
    // The second key's own use brings the team to its quota: both keys are marked, the
    // outsider is not.
    report(&store, "b3", &second, 2, now);
    let tomorrow = Some(quota::next_day_start(now));
    assert_eq!(mark_of(&store, &first), tomorrow);
    assert_eq!(mark_of(&store, &second), tomorrow);
    assert_eq!(mark_of(&store, &outsider), None);
    assert_eq!(occurrences(&store, "quota.exceeded").len(), 1);
    let shown = show(&store, &actor, "acme", now).unwrap();
    assert_eq!(shown.usage.today, 10);
    assert_eq!(shown.key_count, 2);
    assert_eq!(shown.shared_quotas.per_day, Some(10));
    // Raising the quota lifts both marks at once.
    let raise = TeamChanges {
        per_day: Some(Some(100)),
        ..TeamChanges::default()
    };
    update(
        &store,
        &actor,
        "acme",
        &raise,
        now,
        &AlertSettings::default(),
    )
    .unwrap();
    assert_eq!(mark_of(&store, &first), None);
    assert_eq!(mark_of(&store, &second), None);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_plan_gives_a_team_its_quotas_and_deletion_waits_for_its_members() {
    let (store, dir) = temp_store("teams", "plan");
    let now = clock::now();
    let actor = Actor::bootstrap();
    let team = Team {
        name: "free-co".into(),
        plan: Some(Plan::Free),
        quotas: Quotas::default(),
        created_at: now,
        updated_at: now,
    };
    let created = create(&store, &actor, &team, now).unwrap();
    assert_eq!(created.shared_quotas.per_day, Some(1_000));
    assert!(matches!(
        create(&store, &actor, &team, now),
        Err(TeamError::Exists)
    ));
    let unknown = Team {
        name: "x".into(),
        plan: Some(Plan::new("gold")),
        ..team.clone()
    };
    assert!(matches!(
        create(&store, &actor, &unknown, now),
        Err(TeamError::Invalid(_))
    ));
    let key = key_in_team(&store, "free-co", now);
    assert!(matches!(
        delete(&store, &actor, "free-co", now),
        Err(TeamError::InUse {
            keys: 1,
            tokens: 0,
            webhooks: 0
        })
    ));
    let blue = Actor {
        team: Some("blue".into()),
        ..Actor::bootstrap()
    };
    assert!(matches!(
        show(&store, &blue, "free-co", now),
        Err(TeamError::NotFound)
    ));
    assert!(list(&store, &blue, now).unwrap().is_empty());
    app::keys::delete(&store, &actor, &key.id, now).unwrap();
    delete(&store, &actor, "free-co", now).unwrap();
    assert!(matches!(
        show(&store, &actor, "free-co", now),
        Err(TeamError::NotFound)
    ));
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_plan_a_team_is_on_cannot_be_deleted() {
    let (store, dir) = temp_store("teams", "plan_delete");
    let now = clock::now();
    let actor = Actor::bootstrap();
    let gold = crate::domain::plans::PlanDefinition {
        name: Plan::new("gold"),
        description: String::new(),
        limits: crate::domain::plans::PlanLimits {
            per_day: Some(50),
            ..Default::default()
        },
    };
    app::plans::create(&store, &actor, &gold, now).unwrap();
    let team = Team {
        name: "gilded".into(),
        plan: Some(Plan::new("gold")),
        quotas: Quotas::default(),
        created_at: now,
        updated_at: now,
    };
    create(&store, &actor, &team, now).unwrap();
    let refused = app::plans::delete(&store, &actor, "gold", now).unwrap_err();
    assert!(refused.to_string().contains("gilded"), "{refused}");
    let off = TeamChanges {
        plan: Some(None),
        ..TeamChanges::default()
    };
    update(
        &store,
        &actor,
        "gilded",
        &off,
        now,
        &AlertSettings::default(),
    )
    .unwrap();
    app::plans::delete(&store, &actor, "gold", now).unwrap();
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn new_keys_and_moved_keys_follow_the_teams_marks() {
    let (store, dir) = temp_store("teams", "moves");
    let now = clock::now();
    let actor = Actor::bootstrap();
    let settings = AlertSettings::default();
    let first = key_in_team(&store, "full", now);
    let quota = TeamChanges {
        per_day: Some(Some(3)),
        ..TeamChanges::default()
    };
    update(&store, &actor, "full", &quota, now, &settings).unwrap();
    report(&store, "b1", &first, 3, now);
    let tomorrow = Some(quota::next_day_start(now));
    // A key created in a team over its quota starts marked.
    let second = key_in_team(&store, "full", now);
    assert_eq!(mark_of(&store, &second), tomorrow);
    // Moving the key that used the quota away lifts the mark of the key left behind, and marks
    // nothing in the new team (it has no quota).
    let moved = crate::domain::keys::KeyChanges {
        team: Some("elsewhere".into()),
        ..Default::default()
    };
    app::keys::update(&store, &actor, &first.id, moved, now).unwrap();
    assert_eq!(mark_of(&store, &second), None);
    assert_eq!(mark_of(&store, &first), None);
    // Moving it back brings its use back into the team's sum.
    let back = crate::domain::keys::KeyChanges {
        team: Some("full".into()),
        ..Default::default()
    };
    app::keys::update(&store, &actor, &first.id, back, now).unwrap();
    assert_eq!(mark_of(&store, &second), tomorrow);
    assert_eq!(mark_of(&store, &first), tomorrow);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}
