//! Each job as a worker runs it: what it takes from the worker before it runs, and how its
//! outcomes reach the log and the metrics. Log lines name the root context (`#12 …`), never a
//! key: a quarantined record by its id and field.

use log::{debug, info, warn};

use crate::background::{publish_store_gauges, Env, WorkerJob};
use crate::sync::enroll::{Enroll, EnrollOutcome};
use crate::sync::fleet::{FleetOutcome, FleetSync};
use crate::sync::refresh::{Outcome, Refresh};
use crate::sync::usage::{ReportOutcome, Usage};

impl WorkerJob for Refresh {
    fn report(&mut self, env: &Env<'_>, outcome: &Outcome) {
        let id = env.context_id;
        for record in self.take_quarantined() {
            // By id and field only: a record never holds a secret, but keep logs to what
            // identifies the key.
            warn!(
                "#{id} snapshot record quarantined (key treated as absent): key {:?} {}",
                record.id, record.error
            );
            env.worker.metrics.quarantined(env.host);
        }
        env.worker.metrics.refresh(env.host, outcome);
        match outcome {
            Outcome::Applied {
                version,
                keys,
                full,
            } => info!(
                "#{id} snapshot version {version} applied ({}; {keys} keys)",
                if *full { "full" } else { "delta" }
            ),
            Outcome::Unchanged => debug!("#{id} snapshot unchanged"),
            Outcome::Failed(error) => {
                warn!("#{id} snapshot refresh failed, last good snapshot keeps serving: {error}")
            }
            Outcome::NextPage { path } => debug!("#{id} fetching next snapshot page {path}"),
            Outcome::Lost => {
                debug!("#{id} the refresh lease passed to another worker: its answer is ignored")
            }
        }
        if matches!(
            outcome,
            Outcome::Applied { .. } | Outcome::Unchanged | Outcome::Failed(_)
        ) {
            publish_store_gauges(env.host, env.worker, env.gathered);
        }
    }
}

impl WorkerJob for Usage {
    fn before_tick(&mut self, env: &Env<'_>) {
        for gathered in env.gathered {
            // The tally's lock only while the batch is taken: requests wait on it.
            let batch = gathered.tally().take_batch(&env.worker.config.routes);
            self.hand_over_batch(batch);
        }
    }

    fn report(&mut self, env: &Env<'_>, outcome: &ReportOutcome) {
        let id = env.context_id;
        env.worker.metrics.usage(env.host, outcome);
        match outcome {
            ReportOutcome::Posted { reports } => debug!("#{id} posted usage ({reports} reports)"),
            ReportOutcome::Requeued { reason } => {
                warn!("#{id} usage report failed, will retry: {reason}")
            }
            ReportOutcome::Dropped { reason, reports } => {
                warn!("#{id} usage report dropped after retries ({reports} reports): {reason}")
            }
        }
    }
}

impl WorkerJob for FleetSync {
    fn before_tick(&mut self, env: &Env<'_>) {
        for gathered in env.gathered {
            let slots = gathered.touched().take_sorted();
            self.hand_over_slots(slots);
        }
        self.note_slot_count(env.worker.gathered.slots());
    }

    fn before_answer(&mut self, env: &Env<'_>) {
        self.note_slot_count(env.worker.gathered.slots());
    }

    fn report(&mut self, env: &Env<'_>, outcome: &FleetOutcome) {
        let (id, metrics) = (env.context_id, &env.worker.metrics);
        match outcome {
            FleetOutcome::Synced {
                keys_sent,
                keys_updated,
                keys_skipped,
            } => {
                metrics.fleet_sync(env.host, Some(*keys_sent as u64));
                metrics.fleet_remote_age(env.host, 0);
                debug!(
                    "#{id} fleet sync: sent {keys_sent} keys, updated {keys_updated}, skipped {keys_skipped}"
                );
            }
            FleetOutcome::Failed(reason) => {
                metrics.fleet_sync(env.host, None);
                warn!(
                    "#{id} fleet rate-limit sync failed, limits are enforced per Envoy until it works: {reason}"
                );
            }
            // Once per VM: after it, this VM only sends JSON.
            FleetOutcome::FellBackToJson => warn!(
                "#{id} the control service refused the binary fleet sync (415: older than the encoding); this worker sends JSON from now on"
            ),
            FleetOutcome::AskedForEveryBucket => info!(
                "#{id} the control service holds no counts of this Envoy (restarted?): posted every bucket again"
            ),
        }
    }
}

impl WorkerJob for Enroll {
    fn report(&mut self, env: &Env<'_>, outcome: &EnrollOutcome) {
        let id = env.context_id;
        match outcome {
            // The proxy id and name only: never the credential.
            EnrollOutcome::Enrolled { proxy_id, name } => {
                info!("#{id} enrolled with the control service as {proxy_id} ({name})")
            }
            EnrollOutcome::Failed(reason) => warn!(
                "#{id} enrollment failed, syncs wait for a credential (the last good snapshot keeps serving): {reason}"
            ),
        }
    }
}
