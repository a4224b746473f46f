//! The proxy clock of the native build: wall-clock milliseconds since the Unix epoch, what
//! Envoy's `proxy_get_current_time_nanoseconds` gives the Wasm build (a vDSO read, no syscall).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock reads before it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}
