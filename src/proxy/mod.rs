//! The only place that names proxy-wasm: the ABI calls themselves, made so that no status can
//! panic (`abi`), the real `Host` over them (`host`), the root context that configures the
//! worker and drives background work (`root`), and the HTTP context that hands each request to
//! the host-independent request flow (`http`).

pub mod abi;
pub mod host;
pub mod http;
pub mod root;
