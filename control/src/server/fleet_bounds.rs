//! The background work behind the fleet counts' damage bounds (`fleet::bounds`): the limits
//! index read from the change feed as versions are published (on any replica), and the counts
//! refused since the last round raised as `proxy.implausible_report`.

use crate::app;
use crate::domain::clock;
use crate::fleet::bounds::{load, FleetBounds};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// At most this often: a service under constant writes reads its changes in batches.
const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Refusals are raised at least this often, with or without changes.
const ALERT_INTERVAL: Duration = Duration::from_secs(1);

pub async fn keep_current(store: Arc<Store>, bounds: Arc<FleetBounds>) {
    let mut published = store.subscribe();
    let mut alert_tick = tokio::time::interval(ALERT_INTERVAL);
    alert_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        let started = Instant::now();
        let index = Arc::clone(&bounds);
        let read = store
            .run_blocking(move |store| load::refresh(store, &index))
            .await;
        bounds.set_stale(!matches!(read, Ok(Ok(_))));
        match read {
            Ok(Ok(read)) if first => {
                println!(
                    "fleet bounds: limits of {} keys read ({read} rows) in {:.1} ms",
                    bounds.index().len(),
                    started.elapsed().as_secs_f64() * 1000.0
                );
                first = false;
            }
            Ok(Ok(_)) => {}
            // Until a read succeeds every key is bounded by the rate (`Bounding::stale`): the
            // index may lack a raised limit, and honest counts must not be refused for it.
            Ok(Err(error)) => eprintln!("fleet bounds: reading key limits failed: {error}"),
            Err(error) => eprintln!("fleet bounds: task failed: {error}"),
        }
        raise(&store, &bounds).await;
        tokio::select! {
            changed = published.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = alert_tick.tick() => {}
        }
        tokio::time::sleep_until(started + MIN_INTERVAL).await;
    }
}

async fn raise(store: &Arc<Store>, bounds: &FleetBounds) {
    let refused = bounds.take_refused();
    if refused.is_empty() {
        return;
    }
    let raised = store
        .run_blocking(move |store| {
            app::alerts::implausible_fleet_counts(store, &refused, clock::now())
        })
        .await;
    match raised {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => eprintln!("fleet bounds: raising alerts failed: {error}"),
        Err(error) => eprintln!("fleet bounds: task failed: {error}"),
    }
}
