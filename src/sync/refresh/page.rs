//! What an answer does to the store: a page written (the first one decides between a full load
//! into the spare set of shards and a delta in place), the snapshot published when its last
//! page is in, or a 304 recorded.

use crate::host::Host;
use crate::limits::counters;
use crate::store::{self, StoreMeta, STORE_FORMAT};
use crate::sync::refresh::{
    Fetch, MetaStep, Mode, Outcome, Refresh, RefreshError, Sweep, SWEEP_DELAY_MS,
};
use crate::sync::task::Step;
use keygate_contract::page::SnapshotPage;
use keygate_contract::record::validate_page;

fn meta_error(step: MetaStep) -> impl Fn(store::MetaError) -> RefreshError {
    move |error| RefreshError::Meta { step, error }
}

impl Refresh {
    pub(super) fn finish_unchanged(
        &mut self,
        host: &dyn Host,
        fetch: &Fetch,
    ) -> Result<Step<Fetch, Outcome>, RefreshError> {
        if fetch.cursor.is_some() {
            return Err(RefreshError::NotModifiedMidLoad);
        }
        let now = host.now_ms();
        store::update_meta(host, fetch.fence, |meta| StoreMeta {
            last_success_ms: now,
            ..meta.clone()
        })
        .map_err(meta_error(MetaStep::RecordRefresh))?;
        Ok(self.succeeded(host, Outcome::Unchanged))
    }

    pub(super) fn apply_page(
        &mut self,
        host: &dyn Host,
        mut fetch: Fetch,
        body: &[u8],
    ) -> Result<Step<Fetch, Outcome>, RefreshError> {
        let snapshot =
            SnapshotPage::parse(body).map_err(|e| RefreshError::Unreadable(e.to_string()))?;
        let meta = store::read_meta(host);
        let now = host.now_ms();
        if fetch.mode == Mode::Unknown {
            fetch.first_version = snapshot.version;
            fetch.epoch = snapshot.epoch.clone();
            fetch.mode = if snapshot.full {
                // Above every generation ever written, so shards an aborted load left behind
                // never count as current, even after the clock steps back; and of the other
                // parity than the live one, so the load fills the spare set of shards.
                let mut generation = now
                    .max(meta.generation.saturating_add(1))
                    .max(meta.high_water.saturating_add(1));
                if meta.loaded() && generation % 2 == meta.generation % 2 {
                    generation += 1;
                }
                store::update_meta(host, fetch.fence, |current| StoreMeta {
                    high_water: current.high_water.max(generation),
                    ..current.clone()
                })
                .map_err(meta_error(MetaStep::ReserveGeneration))?;
                Mode::Full { generation }
            } else {
                match &fetch.since {
                    Some((since, epoch))
                        if *since == snapshot.since && *epoch == snapshot.epoch => {}
                    _ => return Err(RefreshError::DeltaNotOurs),
                }
                Mode::Delta {
                    generation: meta.generation,
                }
            };
        } else if snapshot.epoch != fetch.epoch
            || snapshot.full != matches!(fetch.mode, Mode::Full { .. })
        {
            return Err(RefreshError::NotTheSameSnapshot);
        }
        let generation = match fetch.mode {
            Mode::Full { generation } | Mode::Delta { generation } => generation,
            Mode::Unknown => meta.generation,
        };
        let page = validate_page(&snapshot, generation).map_err(RefreshError::Invalid)?;
        // Checked again right before writing: the page took time to parse and validate.
        if !self.still_holder(host, fetch.fence) {
            return Err(RefreshError::LeaseExpired);
        }
        self.quarantined.extend(page.quarantined.iter().cloned());
        fetch.change +=
            store::write_page(host, &page, generation).map_err(RefreshError::WriteKeys)?;
        if let Some(cursor) = snapshot.next_cursor.filter(|c| !c.is_empty()) {
            if cursor
                .bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'))
            {
                return Err(RefreshError::BadCursor);
            }
            let call = self.build_request(fetch.since.as_ref(), Some(&cursor), false);
            let path = call.path().to_string();
            fetch.cursor = Some(cursor);
            return Ok(Step::Next {
                call,
                pending: fetch,
                outcome: Outcome::NextPage { path },
            });
        }
        let after = |count: u64, change: i64| (count as i64 + change).max(0) as u64;
        let (generation, keys, limited_keys, full) = match fetch.mode {
            Mode::Full { generation } => (
                generation,
                after(0, fetch.change.keys),
                after(0, fetch.change.limited),
                true,
            ),
            Mode::Delta { generation } => (
                generation,
                after(meta.keys, fetch.change.keys),
                after(meta.limited_keys, fetch.change.limited),
                false,
            ),
            Mode::Unknown => (meta.generation, meta.keys, meta.limited_keys, false),
        };
        // The lease holder is the only writer that may create entries, so it creates the
        // rate-limit slots before any request can count in them (see counters.rs), as many as
        // the snapshot's limited keys need.
        counters::grow(
            host,
            counters::wanted_capacity(limited_keys),
            self.rate_limit_slots,
            now,
        )
        .map_err(RefreshError::GrowSlots)?;
        let version = fetch.first_version;
        let epoch = fetch.epoch;
        store::update_meta(host, fetch.fence, |current| StoreMeta {
            generation,
            version,
            epoch: epoch.clone(),
            keys,
            limited_keys,
            last_success_ms: now,
            format: STORE_FORMAT,
            ..current.clone()
        })
        .map_err(meta_error(MetaStep::RecordSnapshot))?;
        if full {
            self.sweep = Some(Sweep {
                set: (generation + 1) % 2,
                current: generation,
                next_shard: 0,
                due_ms: now + SWEEP_DELAY_MS,
            });
        }
        Ok(self.succeeded(
            host,
            Outcome::Applied {
                version,
                keys,
                full,
            },
        ))
    }
}
