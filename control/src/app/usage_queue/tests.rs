//! Reports posted at once are counted in groups, each exactly once, each answered its own
//! outcome; a batch id repeated inside a group is counted once.

use super::*;
use crate::app::usage::tests::recording::{batch, key_with_daily_quota};
use crate::store::db::temp_store;
use crate::store::usage::hours;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reports_are_each_counted_once_with_their_own_outcome() {
    let (store, dir) = temp_store("usage-queue", "groups");
    let store = Arc::new(store);
    let now = clock::now();
    let hour = now.timestamp() - now.timestamp() % 3600;
    // A quota far above what is reported: no mark, no version bump in the way.
    let key = key_with_daily_quota(&store, 1_000_000, now);
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
                let batch = batch(&batch_id, &key_id, hour, allowed);
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
