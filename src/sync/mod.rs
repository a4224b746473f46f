//! Background jobs with the control service, each done by one worker per Envoy: pulling the
//! key snapshot into the store (`refresh`), posting usage (`usage`, fed by each worker's
//! `tally` as `batch`es through the shared `queue`), and the fleet-wide rate-limit sync
//! (`fleet`), and enrolling this Envoy for a credential of its own (`enroll`, kept for every
//! worker by `identity`). One mechanism runs them all (`task`: the call in flight, its token and deadline,
//! the shared-data `lease` that picks the worker and fences it, the backoff); `background/`
//! drives it from the root context's tick through the `Host` trait, so every transition is
//! tested on the host.

pub mod batch;
pub mod enroll;
pub mod fleet;
pub mod identity;
pub mod lease;
pub mod outcome;
pub mod queue;
pub mod refresh;
pub mod tally;
pub mod task;
pub mod usage;
