//! The background work behind the fleet list: the feed's version clock (when each version was
//! published here, for lag in seconds) and the flush of proxies' sightings to the database
//! every `presence::FLUSH_INTERVAL` (one row write per proxy seen, whatever its call rate).

use crate::app::proxies::presence::FLUSH_INTERVAL;
use crate::app::proxies::ProxyRegistry;
use crate::domain::clock;
use crate::store::proxies;
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// Notes every version the feed publishes, as it is published.
pub async fn watch_versions(store: Arc<Store>, registry: Arc<ProxyRegistry>) {
    let mut published = store.subscribe();
    loop {
        let version = *published.borrow_and_update();
        registry.versions.note(version, clock::now());
        if published.changed().await.is_err() {
            return;
        }
    }
}

/// Flushes sightings every interval, and once more when the service stops.
pub async fn keep_flushing(
    store: Arc<Store>,
    registry: Arc<ProxyRegistry>,
    mut shutting_down: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(FLUSH_INTERVAL);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = every.tick() => false,
            _ = shutting_down.wait_for(|stop| *stop) => true,
        };
        flush(&store, &registry).await;
        if stopping {
            return;
        }
    }
}

async fn flush(store: &Arc<Store>, registry: &Arc<ProxyRegistry>) {
    let seen = registry.presence.take();
    if seen.is_empty() {
        return;
    }
    let writer = Arc::clone(store);
    let written = seen.clone();
    let result = writer
        .run_blocking(move |store| {
            store.write_outside_feed(|tx| proxies::merge_presence(tx, &written))
        })
        .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            eprintln!(
                "keygate-control: proxy presence not written (kept for the next flush): {error}"
            );
            registry.presence.restore(seen);
        }
        Err(error) => {
            eprintln!("keygate-control: proxy presence flush failed: {error}");
            registry.presence.restore(seen);
        }
    }
}
