//! Keygate as an Envoy dynamic module (`libkeygate.so`): the same core as the Wasm filter (the
//! `keygate` crate: policy, store, limits, sync jobs, the request flow), with native glue:
//! - `abi/`: Envoy's dynamic-module ABI, written by hand (no published SDK).
//! - `hooks`: the event hooks Envoy calls; `module`: one filter configuration and each worker
//!   thread's `Worker`; `filter_host`: the `Host` of a request.
//! - `shared`: the key store and counters in this process's memory, with the CAS semantics of
//!   Envoy's shared data, which the core relies on.
//! - `background`, `client`: the background thread that runs the sync jobs, with our own HTTP
//!   client; `stats`, `envoy_stats`: metrics as Envoy stats from any thread; `logger`, `clock`.
//!
//! No panics on any path: a panic here is Envoy's crash (the release profile aborts).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod abi;
pub mod background;
pub mod client;
pub mod clock;
pub mod envoy_stats;
pub mod filter_host;
pub mod hooks;
pub mod logger;
pub mod module;
pub mod pin;
pub mod shared;
pub mod stats;
