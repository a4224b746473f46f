//! Background work with the control service, done by one worker per Envoy: pulling the key
//! snapshot into the store (`refresh`), posting usage (`usage`), the fleet-wide rate-limit sync
//! (`fleet`), and the shared-data lease that
//! picks the worker and fences it (`lease`). Driven by the root context's tick through the
//! `Host` trait, so every transition is tested on the host.

pub mod batch;
pub mod fleet;
pub mod lease;
pub mod queue;
pub mod refresh;
pub mod tally;
pub mod task;
pub mod usage;
