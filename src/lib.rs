//! Keygate: API-key authentication for Envoy as a proxy-wasm filter.
//!
//! The pure logic (config, extraction, addresses, routes, decision, store, refresh) is plain
//! Rust tested on the host; `root` and `filter` are the only modules that talk to proxy-wasm's
//! context traits.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod abi;
pub mod codec;
pub mod config;
pub mod contract;
pub mod decision;
pub mod extract;
pub mod filter;
pub mod host;
pub mod keys;
pub mod lease;
pub mod limiter;
pub mod metrics;
pub mod net;
pub mod ratelimit;
pub mod refresh;
pub mod root;
pub mod routes;
pub mod snapshot;
pub mod store;
pub mod timefmt;
pub mod usage;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // Our logger, not the SDK's: the SDK's unwraps the status of every log call.
    abi::install_logger(log::LevelFilter::Info);
    std::panic::set_hook(Box::new(|info| {
        // With panic = "abort" the VM dies after this; at least say where.
        let _ = abi::log(LogLevel::Critical, &format!("keygate panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| Box::new(root::KeygateRoot::new(context_id)));
}}
