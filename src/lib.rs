//! Keygate: API-key authentication for Envoy as a proxy-wasm filter.
//!
//! The folders are the architecture (docs/architecture.md draws it):
//! - `keygate_contract` (crate `contract/`): every rule and message shared with the control
//!   service, defined once; also the bounds-checked reader of the binary formats.
//! - `policy/`: the pure request decision (credential, client address, route scope, answer).
//! - `store/`: the key record, its codec and the key store in shared data.
//! - `limits/`: rate and concurrency limits (window maths, counters in shared data).
//! - `sync/`: background jobs with the control service (snapshot refresh, usage, fleet sync),
//!   the one mechanism that runs them (`sync/task.rs`) and the lease.
//! - `request`: one request's flow (strip, decide, limit, forward, release) over `Host`.
//! - `background/`: a worker's background work over `Host`: the jobs on every tick, each
//!   answer routed by token to its job, outcomes logged and counted.
//! - `host`: the `Host` trait everything above uses, and `FakeHost` for tests.
//! - `proxy/`: the only folder that names proxy-wasm: the ABI, the real `Host`, the contexts.
//! - `config`, `metrics`: the plugin configuration and the metrics it exports.
//! - `headers`: the ABI's header-map format.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod background;
pub mod config;
pub mod gathered;
pub mod headers;
pub mod host;
pub mod limits;
pub mod metrics;
pub mod policy;
#[cfg(feature = "wasm")]
pub mod proxy;
pub mod request;
pub mod store;
pub mod sync;

#[cfg(feature = "wasm")]
proxy_wasm::main! {{
    // Our logger, not the SDK's: the SDK's unwraps the status of every log call.
    proxy::abi::install_logger(log::LevelFilter::Info);
    std::panic::set_hook(Box::new(|info| {
        // With panic = "abort" the VM dies after this; at least say where.
        let _ = proxy::abi::log(proxy_wasm::types::LogLevel::Critical, &format!("keygate panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| Box::new(proxy::root::KeygateRoot::new(context_id)));
}}
