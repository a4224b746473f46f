//! Failed client authentications at the token endpoint, counted per client id from an address
//! and per address over a minute: past the limit the endpoint refuses before checking a secret
//! (429), so guessing is slow and cheap to refuse. A client id is counted with its address: key
//! ids are not secret, so a count per id alone would let anyone lock a key's holder out of the
//! endpoint. Per replica, in memory, bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The window failures are counted over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Failures a client id may have from one address in a window.
pub const PER_CLIENT: u32 = 10;
/// Failures an address may have in a window (it may try several ids).
pub const PER_ADDRESS: u32 = 30;
/// Subjects tracked at most; expired ones are dropped first when full.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Client(String, Option<IpAddr>),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Debug, Default)]
pub struct FailureLimiter {
    windows: Mutex<HashMap<Subject, Window>>,
    /// Tokens issued, failed client authentications, and requests refused for too many
    /// failures: the metrics `keygate_control_oauth_*_total`.
    pub issued: AtomicU64,
    pub failures: AtomicU64,
    pub throttled: AtomicU64,
}

impl FailureLimiter {
    fn subjects(client_id: Option<&str>, address: Option<IpAddr>) -> Vec<(Subject, u32)> {
        let mut subjects = Vec::with_capacity(2);
        if let Some(id) = client_id {
            subjects.push((Subject::Client(id.to_string(), address), PER_CLIENT));
        }
        if let Some(address) = address {
            subjects.push((Subject::Address(address), PER_ADDRESS));
        }
        subjects
    }

    /// How long until the client id or the address may try again; `None`: now.
    pub fn blocked_for(
        &self,
        client_id: Option<&str>,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Option<Duration> {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        Self::subjects(client_id, address)
            .into_iter()
            .filter_map(|(subject, limit)| {
                let window = windows.get(&subject)?;
                let ends = window.started + WINDOW;
                (window.failures >= limit && ends > now).then(|| ends - now)
            })
            .max()
    }

    /// Counts one failed authentication of the client id from the address.
    pub fn failed(&self, client_id: Option<&str>, address: Option<IpAddr>, now: Instant) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, window| window.started + WINDOW > now);
        }
        for (subject, _) in Self::subjects(client_id, address) {
            if windows.len() >= MAX_TRACKED && !windows.contains_key(&subject) {
                continue;
            }
            let window = windows.entry(subject).or_insert(Window {
                started: now,
                failures: 0,
            });
            if window.started + WINDOW <= now {
                *window = Window {
                    started: now,
                    failures: 0,
                };
            }
            window.failures = window.failures.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_blocked_after_its_failures_until_the_window_ends() {
        let limiter = FailureLimiter::default();
        let start = Instant::now();
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..PER_CLIENT {
            assert_eq!(
                limiter.blocked_for(Some("key_1"), Some(address), start),
                None
            );
            limiter.failed(Some("key_1"), Some(address), start);
        }
        let wait = limiter.blocked_for(
            Some("key_1"),
            Some(address),
            start + Duration::from_secs(20),
        );
        assert_eq!(wait, Some(Duration::from_secs(40)));
        // Another id from the same address still may, until the address's own limit, and the
        // same id from elsewhere (its holder) is not locked out by a stranger's guesses.
        assert_eq!(
            limiter.blocked_for(Some("key_2"), Some(address), start),
            None
        );
        let holder: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            limiter.blocked_for(Some("key_1"), Some(holder), start),
            None
        );
        assert_eq!(
            limiter.blocked_for(Some("key_1"), Some(address), start + WINDOW),
            None
        );
    }

    #[test]
    fn an_address_is_blocked_across_client_ids() {
        let limiter = FailureLimiter::default();
        let start = Instant::now();
        let address: IpAddr = "2001:db8::1".parse().unwrap();
        for i in 0..PER_ADDRESS {
            limiter.failed(Some(&format!("key_{i}")), Some(address), start);
        }
        assert!(limiter
            .blocked_for(Some("key_new"), Some(address), start)
            .is_some());
        assert_eq!(limiter.blocked_for(Some("key_new"), None, start), None);
    }
}
