//! A lease in shared data that lets exactly one worker VM of an Envoy do a periodic job (pull
//! the snapshot, post usage) for all of them, with its own schedule and failure backoff.

use serde::{Deserialize, Serialize};

use crate::host::{Host, WriteError};
use crate::store::CAS_RETRIES;

const MAX_BACKOFF_MS: u64 = 30_000;

/// The shared lease and schedule of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: u64,
    /// While non-zero and in the future, `holder` is running the job.
    pub pending_until_ms: u64,
    pub next_due_ms: u64,
    pub failures: u32,
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

/// Takes the lease for `me` until `pending_until_ms` if the job is due and nobody holds it.
/// A single CAS attempt: losing it means another worker took the job.
pub fn try_claim(host: &dyn Host, key: &str, me: u64, now_ms: u64, pending_until_ms: u64) -> bool {
    let (lease, cas) = read(host, key);
    if lease.pending_until_ms > now_ms || now_ms < lease.next_due_ms {
        return false;
    }
    let claimed = Lease {
        holder: me,
        pending_until_ms,
        ..lease
    };
    write(host, key, &claimed, cas).is_ok()
}

/// Whether `me` still holds the lease (it may have expired and been taken over).
pub fn held_by(host: &dyn Host, key: &str, me: u64) -> bool {
    let (lease, _) = read(host, key);
    lease.holder == me && lease.pending_until_ms > 0
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
    fn one_holder_at_a_time_with_expiry_and_backoff() {
        let host = FakeHost::at(1_000);
        assert!(try_claim(&host, "job", 1, 1_000, 5_000));
        assert!(!try_claim(&host, "job", 2, 1_000, 5_000));
        assert!(held_by(&host, "job", 1));
        // The holder vanished: after its deadline another worker takes over.
        assert!(try_claim(&host, "job", 2, 5_001, 9_000));
        assert!(!held_by(&host, "job", 1));
        release(&host, "job", 1, 5_001, Some(6_000)); // not the holder any more: no effect
        assert!(held_by(&host, "job", 2));
        release(&host, "job", 2, 6_000, None);
        assert_eq!(read(&host, "job").0.next_due_ms, 6_500);
        assert!(!try_claim(&host, "job", 3, 6_499, 9_000));
        assert!(try_claim(&host, "job", 3, 6_500, 9_000));
        release(&host, "job", 3, 7_000, None);
        assert_eq!(
            read(&host, "job").0,
            Lease {
                holder: 3,
                pending_until_ms: 0,
                next_due_ms: 8_000,
                failures: 2
            }
        );
        assert!(try_claim(&host, "job", 3, 8_000, 9_000));
        release(&host, "job", 3, 8_100, Some(10_000));
        assert_eq!(read(&host, "job").0.failures, 0);
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff_ms(0), 500);
        assert_eq!(backoff_ms(3), 4_000);
        assert_eq!(backoff_ms(40), 30_000);
    }
}
