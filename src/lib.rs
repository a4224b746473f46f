//! Keygate: API-key authentication for Envoy as a proxy-wasm filter.

pub mod snapshot;
