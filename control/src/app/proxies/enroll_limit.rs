//! Enrollment attempts per enrollment token and minute, per replica: a leaked enrollment token
//! cannot mint identities faster than a fleet's restarts need. Keyed by the id of a token known
//! to be usable, so made-up secrets never take room here (they are limited per address, as
//! failures, by `FailureLimiter`).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Tokens tracked at most; expired windows are dropped first when full.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct EnrollLimit {
    per_minute: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl EnrollLimit {
    pub fn new(per_minute: u32) -> Self {
        EnrollLimit {
            per_minute,
            windows: Mutex::default(),
        }
    }

    /// Counts an attempt with enrollment token `token_id`: `Some(wait)` when over the limit
    /// (not counted then).
    pub fn attempt(&self, token_id: &str, now: Instant) -> Option<Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, (started, _)| now.duration_since(*started) < WINDOW);
            if windows.len() >= MAX_TRACKED {
                return Some(WINDOW);
            }
        }
        let (started, attempts) = windows.entry(token_id.to_string()).or_insert((now, 0));
        if now.duration_since(*started) >= WINDOW {
            *started = now;
            *attempts = 0;
        }
        if *attempts >= self.per_minute {
            return Some(WINDOW.saturating_sub(now.duration_since(*started)));
        }
        *attempts += 1;
        None
    }
}

/// Enrollments of one name within [`WINDOW`] that make it look shared: two proxies under one
/// name take the credential from each other (each enrolls again when refused), which looks
/// like this; so does a proxy restarting in a loop. Either is worth a warning.
pub const CHURN_ENROLLMENTS: usize = 3;

/// Recent enrollments per proxy name, per replica, bounded.
#[derive(Debug, Default)]
pub struct NameChurn {
    recent: Mutex<HashMap<String, Vec<Instant>>>,
}

impl NameChurn {
    /// Notes an enrollment of `name`: how many it had within the window, this one included.
    pub fn enrolled(&self, name: &str, now: Instant) -> usize {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= MAX_TRACKED {
            recent.retain(|_, times| times.iter().any(|at| now.duration_since(*at) < WINDOW));
            if recent.len() >= MAX_TRACKED {
                return 1;
            }
        }
        let times = recent.entry(name.to_string()).or_default();
        times.retain(|at| now.duration_since(*at) < WINDOW);
        times.push(now);
        times.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_past_the_limit_wait_for_the_window() {
        let limit = EnrollLimit::new(3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.attempt("kge_a", start), None);
        }
        assert_eq!(
            limit.attempt("kge_a", start + Duration::from_secs(20)),
            Some(Duration::from_secs(40))
        );
        assert_eq!(
            limit.attempt("kge_b", start),
            None,
            "another token has its own window"
        );
        assert_eq!(limit.attempt("kge_a", start + WINDOW), None);
    }

    #[test]
    fn a_name_enrolling_again_and_again_is_counted_within_the_window() {
        let churn = NameChurn::default();
        let start = Instant::now();
        assert_eq!(churn.enrolled("e1", start), 1);
        assert_eq!(churn.enrolled("e1", start + Duration::from_secs(5)), 2);
        assert_eq!(churn.enrolled("e2", start), 1);
        assert_eq!(churn.enrolled("e1", start + Duration::from_secs(70)), 1);
    }
}
