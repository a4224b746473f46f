//! Endpoints, the outbox and its leases, retries and disabling, on a real (temporary) database.

use super::*;
use crate::app;
use crate::app::test_keys::key_in_team;
use crate::domain::webhooks::DISABLE_AFTER;
use crate::store::db::temp_store;

fn endpoint(store: &Store, events: &[&str], team: Option<&str>, now: DateTime<Utc>) -> Webhook {
    let new = NewWebhook {
        url: "https://hooks.example.com/k".into(),
        description: String::new(),
        events: events.iter().map(|event| event.to_string()).collect(),
        team: team.map(String::from),
    };
    create(store, &Actor::bootstrap(), new, now).unwrap()
}

#[test]
fn events_reach_the_endpoints_that_want_them_once_and_one_lease_at_a_time() {
    let (store, dir) = temp_store("webhooks", "outbox");
    let now = clock::now();
    let everything = endpoint(&store, &["key.created", "key.deleted"], None, now);
    let blue = endpoint(&store, &["key.created"], Some("blue"), now);
    let deletions = endpoint(&store, &["key.deleted"], None, now);
    assert!(everything.secret.starts_with("whsec_"));
    let red_key = key_in_team(&store, "red", now);
    key_in_team(&store, "blue", now);
    app::keys::delete(&store, &Actor::bootstrap(), &red_key.id, now).unwrap();
    let count = |id: &str| {
        deliveries(&store, &Actor::bootstrap(), id, 50)
            .unwrap()
            .len()
    };
    assert_eq!(count(&everything.id), 3);
    assert_eq!(count(&blue.id), 1);
    assert_eq!(count(&deletions.id), 1);
    // A team token sees its team's endpoints only.
    let blue_actor = Actor {
        team: Some("blue".into()),
        ..Actor::bootstrap()
    };
    let seen: Vec<String> = list(&store, &blue_actor)
        .unwrap()
        .into_iter()
        .map(|hook| hook.id)
        .collect();
    assert_eq!(seen, std::slice::from_ref(&blue.id));
    assert!(matches!(
        show(&store, &blue_actor, &everything.id),
        Err(WebhookError::NotFound)
    ));
    // A lease keeps a delivery from a second replica until it lapses.
    let lease = Duration::seconds(30);
    let first = lease_due(&store, now, lease, 100).unwrap();
    assert_eq!(first.len(), 5);
    assert!(lease_due(&store, now, lease, 100).unwrap().is_empty());
    let lapsed = lease_due(&store, now + Duration::seconds(31), lease, 100).unwrap();
    assert_eq!(lapsed.len(), 5);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failures_back_off_then_disable_the_endpoint_after_three_days() {
    let (store, dir) = temp_store("webhooks", "disable");
    let start = clock::now();
    let failing = endpoint(&store, &["key.created"], None, start);
    let watcher = endpoint(&store, &["webhook.disabled"], None, start);
    key_in_team(&store, "", start);
    let base = Duration::seconds(5);
    let failed = AttemptResult::Failed {
        status: Some(500),
        error: "answered 500".into(),
    };
    let lease = Duration::seconds(30);
    let leased = lease_due(&store, start, lease, 10).unwrap();
    assert_eq!(leased.len(), 1);
    record_attempt(&store, &leased[0], &failed, base, start).unwrap();
    // Not due again before the backoff; the same event id when it is.
    assert!(lease_due(&store, start + Duration::seconds(4), lease, 10)
        .unwrap()
        .is_empty());
    let retry = lease_due(&store, start + Duration::seconds(5), lease, 10).unwrap();
    assert_eq!(retry[0].event_id, leased[0].event_id);
    assert_eq!(retry[0].attempts, 1);
    let log = deliveries(&store, &Actor::bootstrap(), &failing.id, 10).unwrap();
    assert_eq!(log[0].last_status, Some(500));
    assert_eq!(log[0].status, DeliveryStatus::Pending);
    // Still failing three days on: disabled, its delivery given up, and the watcher told.
    let later = start + DISABLE_AFTER;
    record_attempt(&store, &retry[0], &failed, base, later).unwrap();
    let disabled = show(&store, &Actor::bootstrap(), &failing.id).unwrap();
    assert!(!disabled.enabled);
    assert!(disabled
        .disabled_reason
        .unwrap()
        .contains("every delivery failed"));
    let log = deliveries(&store, &Actor::bootstrap(), &failing.id, 10).unwrap();
    assert_eq!(log[0].status, DeliveryStatus::Failed);
    let told = deliveries(&store, &Actor::bootstrap(), &watcher.id, 10).unwrap();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].event_type, "webhook.disabled");
    // Re-enabling starts the failure streak over.
    let enable = WebhookChanges {
        enabled: Some(true),
        ..WebhookChanges::default()
    };
    let enabled = update(&store, &Actor::bootstrap(), &failing.id, enable, later).unwrap();
    assert!(enabled.enabled && enabled.failing_since.is_none());
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_success_clears_the_failure_streak_and_rotation_keeps_the_old_secret_signing() {
    let (store, dir) = temp_store("webhooks", "rotate");
    let now = clock::now();
    let hook = endpoint(&store, &["key.created"], None, now);
    key_in_team(&store, "", now);
    let lease = Duration::seconds(30);
    let leased = lease_due(&store, now, lease, 10).unwrap();
    let failed = AttemptResult::Failed {
        status: None,
        error: "timed out".into(),
    };
    record_attempt(&store, &leased[0], &failed, Duration::seconds(1), now).unwrap();
    assert!(show(&store, &Actor::bootstrap(), &hook.id)
        .unwrap()
        .failing_since
        .is_some());
    let retry = lease_due(&store, now + Duration::seconds(1), lease, 10).unwrap();
    record_attempt(
        &store,
        &retry[0],
        &AttemptResult::Delivered { status: 204 },
        Duration::seconds(1),
        now,
    )
    .unwrap();
    assert!(show(&store, &Actor::bootstrap(), &hook.id)
        .unwrap()
        .failing_since
        .is_none());
    let rotated = rotate_secret(&store, &Actor::bootstrap(), &hook.id, 60, now).unwrap();
    assert_ne!(rotated.secret, hook.secret);
    assert_eq!(
        rotated.signing_secrets(now),
        [rotated.secret.as_str(), hook.secret.as_str()]
    );
    assert_eq!(
        rotated.signing_secrets(now + Duration::seconds(61)),
        [rotated.secret.as_str()]
    );
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_outcome_recorded_after_the_delivery_was_given_up_changes_nothing() {
    let (store, dir) = temp_store("webhooks", "stale");
    let now = clock::now();
    let hook = endpoint(&store, &["key.created"], Some("blue"), now);
    key_in_team(&store, "blue", now);
    let leased = lease_due(&store, now, Duration::seconds(30), 10).unwrap();
    let off = WebhookChanges {
        enabled: Some(false),
        ..WebhookChanges::default()
    };
    update(&store, &Actor::bootstrap(), &hook.id, off, now).unwrap();
    let delivered = AttemptResult::Delivered { status: 200 };
    record_attempt(&store, &leased[0], &delivered, Duration::seconds(1), now).unwrap();
    let log = deliveries(&store, &Actor::bootstrap(), &hook.id, 10).unwrap();
    assert_eq!(log[0].status, DeliveryStatus::Failed);
    assert_eq!(log[0].attempts, 0);
    // The team cannot be deleted while its endpoint is there (a later team of the name would
    // get its events).
    let refused = crate::app::teams::delete(&store, &Actor::bootstrap(), "blue", now);
    assert!(matches!(
        refused,
        Err(crate::app::teams::TeamError::InUse { webhooks: 1, .. })
    ));
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}
