//! When a connection must be closed: the rule behind `--header-timeout` and `--idle-timeout`,
//! as a plain state machine over instants (driven by `server/listener.rs`).
//!
//! hyper's own `header_read_timeout` starts when a kept-alive connection goes idle, so it would
//! also close every idle connection after the header timeout; and HTTP/2 has none. Counting
//! requests ourselves gives one rule for both protocols:
//! - a connection with a request in flight (a long poll included) has no deadline: reading
//!   its body is bounded by `--body-timeout`, answering it by the handler;
//! - otherwise, once bytes of a next request (or, on a new connection, of the TLS handshake
//!   and the first request) are on the way, the request must start within the header timeout;
//! - otherwise the connection is idle and is closed after the idle timeout.
//!
//! Bytes count as the start of a request whatever they are, so an HTTP/2 client that pings an
//! otherwise idle connection has it closed after the header timeout rather than the idle one:
//! the stricter reading, and the proxies' calls are HTTP/1.1 (envoy/envoy-ha.yaml).

use std::time::{Duration, Instant};

/// The two timeouts the clock applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Why a connection's time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A request's headers (or the TLS handshake) did not arrive in time.
    SlowHeaders,
    /// No request for the idle timeout.
    Idle,
}

/// One connection's state as far as its deadline goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionClock {
    in_flight: u32,
    idle_since: Instant,
    next_request_since: Option<Instant>,
}

impl ConnectionClock {
    /// A connection accepted at `now`: its first request is on the way from the start.
    pub fn opened(now: Instant) -> Self {
        ConnectionClock {
            in_flight: 0,
            idle_since: now,
            next_request_since: Some(now),
        }
    }

    /// Bytes came in. Returns whether this started the header clock (the deadline moved).
    pub fn bytes_arrived(&mut self, now: Instant) -> bool {
        if self.in_flight > 0 || self.next_request_since.is_some() {
            return false;
        }
        self.next_request_since = Some(now);
        true
    }

    /// A request's headers are complete: it is being answered.
    pub fn request_started(&mut self) {
        self.in_flight = self.in_flight.saturating_add(1);
        self.next_request_since = None;
    }

    /// A request's answer was sent (or abandoned). The last one makes the connection idle.
    pub fn request_finished(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.idle_since = now;
        }
    }

    /// When the connection must be closed and why; `None` while a request is in flight.
    pub fn deadline(&self, limits: ClockLimits) -> Option<(Instant, Expiry)> {
        if self.in_flight > 0 {
            return None;
        }
        Some(match self.next_request_since {
            Some(since) => (since + limits.header_timeout, Expiry::SlowHeaders),
            None => (self.idle_since + limits.idle_timeout, Expiry::Idle),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ClockLimits = ClockLimits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(90),
    };

    fn at(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn a_new_connection_has_the_header_timeout_for_its_first_request() {
        let start = Instant::now();
        let mut clock = ConnectionClock::opened(start);
        assert_eq!(
            clock.deadline(LIMITS),
            Some((at(start, 10), Expiry::SlowHeaders))
        );
        // Handshake and header bytes do not push the deadline back: that is the slowloris.
        assert!(!clock.bytes_arrived(at(start, 9)));
        assert_eq!(
            clock.deadline(LIMITS),
            Some((at(start, 10), Expiry::SlowHeaders))
        );
    }

    #[test]
    fn a_request_in_flight_has_no_deadline_however_long_it_waits() {
        let start = Instant::now();
        let mut clock = ConnectionClock::opened(start);
        clock.request_started();
        assert_eq!(clock.deadline(LIMITS), None);
        assert!(!clock.bytes_arrived(at(start, 100)));
        assert_eq!(clock.deadline(LIMITS), None);
        clock.request_finished(at(start, 120));
        assert_eq!(clock.deadline(LIMITS), Some((at(start, 210), Expiry::Idle)));
    }

    #[test]
    fn after_a_request_the_idle_clock_runs_until_the_next_one_begins() {
        let start = Instant::now();
        let mut clock = ConnectionClock::opened(start);
        clock.request_started();
        clock.request_finished(at(start, 1));
        assert_eq!(clock.deadline(LIMITS), Some((at(start, 91), Expiry::Idle)));
        assert!(clock.bytes_arrived(at(start, 50)));
        assert!(!clock.bytes_arrived(at(start, 55)));
        assert_eq!(
            clock.deadline(LIMITS),
            Some((at(start, 60), Expiry::SlowHeaders))
        );
        clock.request_started();
        assert_eq!(clock.deadline(LIMITS), None);
    }

    #[test]
    fn concurrent_requests_keep_the_connection_busy_until_the_last_ends() {
        let start = Instant::now();
        let mut clock = ConnectionClock::opened(start);
        clock.request_started();
        clock.request_started();
        clock.request_finished(at(start, 5));
        assert_eq!(clock.deadline(LIMITS), None);
        clock.request_finished(at(start, 7));
        assert_eq!(clock.deadline(LIMITS), Some((at(start, 97), Expiry::Idle)));
        // A stray extra finish cannot make the count wrap.
        clock.request_finished(at(start, 8));
        assert_eq!(clock.deadline(LIMITS), Some((at(start, 98), Expiry::Idle)));
    }
}
