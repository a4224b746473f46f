//! Limits: per-key rate and concurrency limits. `window` is the pure maths (sliding windows,
//! in-flight places) over `ring`s of bucket counters, `slot_codec` the bytes of a slot,
//! `headers` the response headers, `table` the table of slots in shared data (sized by need,
//! grown by the lease holder), `counters` a key's slot in it (probed, updated by
//! compare-and-swap, moved on growth), `touched` the slots a worker counted in for the fleet
//! sync, `credits` the requests a worker counted ahead for a busy key, `stack_text` text formatted on the stack for headers and slot names. Uses the `Host`
//! trait for shared data; never proxy-wasm directly.

pub mod counters;
pub mod credits;
pub mod headers;
pub mod ring;
pub mod slot_codec;
mod stack_text;
pub mod table;
pub mod touched;
pub mod window;
