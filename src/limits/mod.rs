//! Limits: per-key rate and concurrency limits. `window` is the pure maths (sliding windows,
//! in-flight places, the slot codec, the response headers); `counters` keeps one slot per
//! limited key in shared data, updated by compare-and-swap. Uses the `Host` trait for shared
//! data; never proxy-wasm directly.

pub mod counters;
pub mod window;
