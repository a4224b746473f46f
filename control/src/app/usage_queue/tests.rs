//! Reports posted at once are counted in groups, each exactly once, each answered its own
//! outcome; a batch id repeated inside a group is counted once.

use super::*;
use crate::app;
use crate::domain::keys::KeySettings;
use crate::domain::plans::{Environment, LimitOverrides, Plan};
use crate::domain::usage_report::{HourlyUsage, ALLOWED_CODE};
use crate::store::db::temp_store;
use crate::store::usage::hours;

fn report(batch_id: &str, key_id: &str, hour_start: i64, allowed: u64) -> UsageBatch {
    UsageBatch {
        proxy_id: format!("proxy-{batch_id}"),
        batch_id: batch_id.into(),
        reports: vec![
            HourlyUsage {
                key_id: key_id.into(),
                hour_start,
                counts: vec![(ALLOWED_CODE.into(), allowed)],
            },
            HourlyUsage {
                key_id: "key_unknown".into(),
                hour_start,
                counts: vec![(ALLOWED_CODE.into(), 1)],
            },
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reports_are_each_counted_once_with_their_own_outcome() {
    let (store, dir) = temp_store("usage-queue", "groups");
    let store = Arc::new(store);
    let now = clock::now();
    let hour = now.timestamp() - now.timestamp() % 3600;
    let settings = KeySettings {
        name: "grouped".into(),
        environment: Environment::Test,
        team: String::new(),
        scopes: Vec::new(),
        allowed_ips: Vec::new(),
        expires_at: None,
        plan: Plan::Free,
        limits: LimitOverrides::default(),
    };
    let key = app::keys::create(
        &store,
        &crate::domain::audit::Actor::bootstrap(),
        &settings,
        now,
    )
    .unwrap()
    .key;
    let queue = Arc::new(UsageQueue::default());
    // 60 proxies' reports of 1..=60 requests at once, and batch 7 twice more (retries).
    let mut posts = Vec::new();
    for n in 1..=60u64 {
        posts.push((format!("b{n}"), n));
    }
    posts.push(("b7".into(), 7));
    posts.push(("b7".into(), 7));
    let tasks: Vec<_> = posts
        .into_iter()
        .map(|(batch_id, allowed)| {
            let (queue, store, key_id) = (Arc::clone(&queue), Arc::clone(&store), key.id.clone());
            tokio::spawn(async move {
                let batch = report(&batch_id, &key_id, hour, allowed);
                (batch_id, queue.record(&store, batch).await)
            })
        })
        .collect();
    let mut duplicates = 0;
    for task in tasks {
        let (batch_id, outcome) = task.await.unwrap();
        let outcome = outcome.unwrap();
        assert_eq!(
            (outcome.accepted, outcome.unknown_keys),
            (1, 1),
            "{batch_id}"
        );
        duplicates += usize::from(outcome.duplicate);
    }
    assert_eq!(
        duplicates, 2,
        "batch b7 counted once, its two retries answered as duplicates"
    );
    let counted = store
        .read(|tx| hours(tx, &key.id, hour, hour + 3600))
        .unwrap();
    let allowed: u64 = counted.iter().map(|row| row.count).sum();
    assert_eq!(allowed, (1..=60).sum::<u64>());
    assert!(
        !queue.lock().writing,
        "the writer stopped once the queue was empty"
    );
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}
