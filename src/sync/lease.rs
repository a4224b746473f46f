//! A lease in shared data that lets exactly one worker VM of an Envoy do a periodic job (pull
//! the snapshot, post usage) for all of them, with its own schedule and failure backoff.
//!
//! Every claim takes a new fencing token (`fence`, one more than the last), so what a holder
//! writes can be refused once a later holder exists (see `store::update_meta`).

use serde::{Deserialize, Serialize};

use crate::host::{Host, WriteError};
use crate::store::CAS_RETRIES;

const MAX_BACKOFF_MS: u64 = 30_000;
/// With `try_claim_sticky`, how long after a released job falls due the worker that ran it
/// last has it to itself.
pub const HANDOVER_GRACE_MS: u64 = 1_000;
/// A deadline or schedule further ahead than this can only come from a clock that stepped back
/// since it was written (the longest legitimate one is an hour's refresh interval plus jitter),
/// so it counts as passed: a clock step never stalls a job until the clock catches up.
const MAX_AHEAD_MS: u64 = 2 * 3_600_000;

/// Whether `instant_ms` is still to come at `now_ms`, and plausibly so.
fn ahead(instant_ms: u64, now_ms: u64) -> bool {
    instant_ms > now_ms && instant_ms - now_ms <= MAX_AHEAD_MS
}

/// The shared lease and schedule of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: u64,
    /// While non-zero and in the future, `holder` is running the job.
    pub pending_until_ms: u64,
    pub next_due_ms: u64,
    pub failures: u32,
    /// Fencing token of the current (or last) holder; grows with every claim.
    #[serde(default)]
    pub fence: u64,
}

/// Backoff after `failures` consecutive failures: 500 ms doubling, capped at 30 s.
pub fn backoff_ms(failures: u32) -> u64 {
    500u64
        .saturating_mul(1u64 << failures.min(16))
        .min(MAX_BACKOFF_MS)
}

pub fn read(host: &dyn Host, key: &str) -> (Lease, Option<u32>) {
    let (bytes, cas) = host.get_shared(key);
    let lease = bytes
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    (lease, cas)
}

fn write(host: &dyn Host, key: &str, lease: &Lease, cas: Option<u32>) -> Result<(), WriteError> {
    host.set_shared(key, &serde_json::to_vec(lease).unwrap_or_default(), cas)
}

/// Takes the lease for `me` until `pending_until_ms` if the job is due and nobody holds it,
/// and returns the new fencing token. A single CAS attempt: losing it means another worker
/// took the job.
pub fn try_claim(
    host: &dyn Host,
    key: &str,
    me: u64,
    now_ms: u64,
    pending_until_ms: u64,
) -> Option<u64> {
    claim(host, key, me, now_ms, pending_until_ms, false)
}

/// `try_claim`, but a job its last holder released stays with that holder while it is alive:
/// another worker may claim it only `HANDOVER_GRACE_MS` after it fell due (a holder that died
/// mid-job, its deadline passed, or whose last run failed, is taken over at once as with
/// `try_claim`). For the snapshot refresh, whose pages are parsed in the holder's linear
/// memory, which never shrinks: kept in one VM, that memory is taken once per Envoy instead of
/// once per worker.
pub fn try_claim_sticky(
    host: &dyn Host,
    key: &str,
    me: u64,
    now_ms: u64,
    pending_until_ms: u64,
) -> Option<u64> {
    claim(host, key, me, now_ms, pending_until_ms, true)
}

fn claim(
    host: &dyn Host,
    key: &str,
    me: u64,
    now_ms: u64,
    pending_until_ms: u64,
    sticky: bool,
) -> Option<u64> {
    let (lease, cas) = read(host, key);
    if ahead(lease.pending_until_ms, now_ms) || ahead(lease.next_due_ms, now_ms) {
        return None;
    }
    // Only after a success: a job whose last run failed is anyone's as soon as it is due.
    let released = lease.pending_until_ms == 0 && lease.failures == 0;
    let others_from = lease.next_due_ms.saturating_add(HANDOVER_GRACE_MS);
    if sticky && released && lease.holder != 0 && lease.holder != me && ahead(others_from, now_ms) {
        return None;
    }
    let fence = lease.fence.saturating_add(1);
    let claimed = Lease {
        holder: me,
        pending_until_ms,
        fence,
        ..lease
    };
    write(host, key, &claimed, cas).ok().map(|()| fence)
}

/// Whether `me`, with fencing token `fence`, still holds the lease at `now_ms`: not released,
/// not expired (an expired lease may be taken over at any moment) and not taken over.
pub fn held_by(host: &dyn Host, key: &str, me: u64, fence: u64, now_ms: u64) -> bool {
    let (lease, _) = read(host, key);
    lease.holder == me && lease.fence == fence && lease.pending_until_ms > now_ms
}

/// Moves the holder's deadline (a job with several steps, such as a paged snapshot).
pub fn extend(host: &dyn Host, key: &str, me: u64, pending_until_ms: u64) {
    for _ in 0..CAS_RETRIES {
        let (lease, cas) = read(host, key);
        if lease.holder != me
            || write(
                host,
                key,
                &Lease {
                    pending_until_ms,
                    ..lease
                },
                cas,
            )
            .is_ok()
        {
            return;
        }
    }
}

/// Releases the lease: on success the job is next due at `next_due_on_success`; on failure
/// after the backoff for the consecutive failures so far.
pub fn release(host: &dyn Host, key: &str, me: u64, now_ms: u64, next_due_on_success: Option<u64>) {
    for _ in 0..CAS_RETRIES {
        let (lease, cas) = read(host, key);
        if lease.holder != me {
            return;
        }
        let (next_due_ms, failures) = match next_due_on_success {
            Some(next_due) => (next_due, 0),
            None => {
                let failures = lease.failures.saturating_add(1);
                (now_ms + backoff_ms(failures - 1), failures)
            }
        };
        let next = Lease {
            holder: me,
            pending_until_ms: 0,
            next_due_ms,
            failures,
            fence: lease.fence,
        };
        if write(host, key, &next, cas).is_ok() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;

    #[test]
    fn a_sticky_job_stays_with_its_live_holder_and_passes_on_after_the_grace() {
        let host = FakeHost::at(1_000);
        assert_eq!(try_claim_sticky(&host, "job", 1, 1_000, 5_000), Some(1));
        release(&host, "job", 1, 1_100, Some(2_000));
        // Due at 2,000: the last holder may take it then, another worker only after the grace.
        assert_eq!(try_claim_sticky(&host, "job", 2, 2_000, 6_000), None);
        assert_eq!(try_claim_sticky(&host, "job", 1, 2_000, 6_000), Some(2));
        release(&host, "job", 1, 2_100, Some(3_000));
        assert_eq!(
            try_claim_sticky(&host, "job", 2, 3_000 + HANDOVER_GRACE_MS, 9_000),
            Some(3)
        );
        // A holder whose deadline passed mid-job is taken over at once.
        assert_eq!(try_claim_sticky(&host, "job", 1, 9_001, 12_000), Some(4));
    }

    #[test]
    fn one_holder_at_a_time_with_expiry_and_backoff() {
        let host = FakeHost::at(1_000);
        assert_eq!(try_claim(&host, "job", 1, 1_000, 5_000), Some(1));
        assert_eq!(try_claim(&host, "job", 2, 1_000, 5_000), None);
        assert!(held_by(&host, "job", 1, 1, 1_000));
        // Expired is not held, even before anyone takes over.
        assert!(!held_by(&host, "job", 1, 1, 5_000));
        // The holder vanished: after its deadline another worker takes over, with a new fence.
        assert_eq!(try_claim(&host, "job", 2, 5_001, 9_000), Some(2));
        assert!(!held_by(&host, "job", 1, 1, 5_001));
        release(&host, "job", 1, 5_001, Some(6_000)); // not the holder any more: no effect
        assert!(held_by(&host, "job", 2, 2, 5_001));
        assert!(
            !held_by(&host, "job", 2, 1, 5_001),
            "a stale fence is not the holder"
        );
        release(&host, "job", 2, 6_000, None);
        assert_eq!(read(&host, "job").0.next_due_ms, 6_500);
        assert_eq!(try_claim(&host, "job", 3, 6_499, 9_000), None);
        assert_eq!(try_claim(&host, "job", 3, 6_500, 9_000), Some(3));
        release(&host, "job", 3, 7_000, None);
        assert_eq!(
            read(&host, "job").0,
            Lease {
                holder: 3,
                pending_until_ms: 0,
                next_due_ms: 8_000,
                failures: 2,
                fence: 3
            }
        );
        assert_eq!(try_claim(&host, "job", 3, 8_000, 9_000), Some(4));
        release(&host, "job", 3, 8_100, Some(10_000));
        assert_eq!(read(&host, "job").0.failures, 0);
    }

    #[test]
    fn a_clock_step_back_does_not_stall_the_job() {
        let host = FakeHost::at(0);
        let day = 86_400_000;
        assert_eq!(
            try_claim(&host, "job", 1, 10 * day, 10 * day + 5_000),
            Some(1)
        );
        release(&host, "job", 1, 10 * day, Some(10 * day + 60_000));
        // The clock goes back a day: the schedule written before is not waited for.
        assert_eq!(
            try_claim(&host, "job", 2, 9 * day, 9 * day + 5_000),
            Some(2)
        );
        // Nor a deadline written before the step.
        assert_eq!(
            try_claim(&host, "job", 3, 8 * day, 8 * day + 5_000),
            Some(3)
        );
        // An ordinary schedule is still honoured.
        release(&host, "job", 3, 8 * day, Some(8 * day + 60_000));
        assert_eq!(
            try_claim(&host, "job", 4, 8 * day + 59_999, 8 * day + 65_000),
            None
        );
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff_ms(0), 500);
        assert_eq!(backoff_ms(3), 4_000);
        assert_eq!(backoff_ms(40), 30_000);
    }
}
