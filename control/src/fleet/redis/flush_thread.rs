//! The link's own thread and runtime (why: see [`RedisLink::spawn_thread`]).

use super::{FlushStats, RedisLink};
use crate::fleet::FleetCounts;
use std::sync::Arc;

impl RedisLink {
    /// Starts a link to `url` flushing `counts` on a thread of its own, with its own runtime:
    /// on the service's runtime the flush queued behind the very syncs that overload it (at
    /// 500 simulated Envoys on 2 cores every flush timed out, and the replicas fell back to
    /// their own Envoys' counts exactly when the fleet needed the shared ones). A bad URL is
    /// refused here, before the service starts.
    pub fn spawn_thread(
        url: &str,
        stats: Arc<FlushStats>,
        counts: Arc<FleetCounts>,
    ) -> Result<(), String> {
        let url = url.to_string();
        let (started, outcome) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("redis-flush".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started.send(Err(format!("cannot start its runtime: {error}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    // Inside the runtime: the link's connection belongs to it.
                    match RedisLink::new(&url, stats) {
                        Ok(link) => {
                            let _ = started.send(Ok(()));
                            link.run(counts).await;
                        }
                        Err(error) => {
                            let _ = started.send(Err(error));
                        }
                    }
                });
            })
            .map_err(|error| format!("cannot start the Redis flush thread: {error}"))?;
        outcome
            .recv()
            .unwrap_or_else(|_| Err("the Redis flush thread stopped".into()))
    }
}
