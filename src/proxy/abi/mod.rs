//! The host calls Keygate makes, with every status turned into a value.
//!
//! Why this module exists: proxy-wasm 0.2.x's `hostcalls::*` return `Result`, yet nearly all of
//! them end in `status => panic!("unexpected status")` for any status they were not written to
//! expect (`set_map_value` on `BadArgument`, `set_property` on `NotFound`, `get_shared_data` on
//! `InvalidMemoryAccess`, ...), and `get_map*` slice the host's buffer with unchecked indices and
//! `unwrap` UTF-8 conversions. The SDK also declares each import as returning its `Status` enum,
//! which lacks `BadExpression`, `InvalidMemoryAccess`, `ResultMismatch`, `BrokenConnection` and
//! `Unimplemented`: a host answering one of those hands Rust an enum value that cannot exist. With
//! `panic = "abort"` any of this kills the VM, and Envoy then fails every request it serves.
//!
//! So the imports below are declared again with the signatures of the proxy-wasm ABI 0.2.1 (the
//! ones `hostcalls.rs` declares, with `u32` for every enum and status so any code is a plain
//! number); each wrapper maps `Ok` to a value and every other status, known or not, to a
//! [`HostError`]. Buffers the host allocated in the VM (through the SDK's
//! `proxy_on_memory_allocate`) are taken back with `Vec::from_raw_parts(ptr, size, size)`, as the
//! SDK does, so they are freed exactly once. The header-map wire format is read by
//! [`decode_header_map`], a pure, bounds-checked function.
//!
//! How it was checked: the unit tests (`tests.rs`) feed every status 0..=13 and some unknown ones to
//! every wrapper through stand-in imports (used on every target but wasm32), and give the decoder
//! every truncation of a valid map, every single-byte corruption of one, and hand-made garbage
//! (huge counts and sizes, missing NULs, trailing bytes). `tests/e2e/test_no_panicking_hostcalls.py`
//! fails when a file other than this one calls a panicking SDK function.
//!
//! One call still goes through the SDK: [`dispatch_http_call`], see there why.

use std::fmt;
use std::ptr::{null, null_mut};
use std::time::Duration;

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};

/// A status other than `Ok` from a host call (proxy-wasm ABI 0.2.1 `WasmResult`), or host
/// bytes that are not in the format the ABI specifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    NotFound,
    BadArgument,
    SerializationFailure,
    ParseFailure,
    BadExpression,
    InvalidMemoryAccess,
    Empty,
    CasMismatch,
    ResultMismatch,
    InternalFailure,
    BrokenConnection,
    Unimplemented,
    /// A status code the ABI does not define.
    Unknown(u32),
    /// The call succeeded but returned bytes that do not decode.
    Malformed(MapDecodeError),
}

impl HostError {
    /// `Ok(())` for status 0 (`Ok`), the error for any other code.
    pub fn check(status: u32) -> Result<(), HostError> {
        let error = match status {
            0 => return Ok(()),
            1 => HostError::NotFound,
            2 => HostError::BadArgument,
            3 => HostError::SerializationFailure,
            4 => HostError::ParseFailure,
            5 => HostError::BadExpression,
            6 => HostError::InvalidMemoryAccess,
            7 => HostError::Empty,
            8 => HostError::CasMismatch,
            9 => HostError::ResultMismatch,
            10 => HostError::InternalFailure,
            11 => HostError::BrokenConnection,
            12 => HostError::Unimplemented,
            other => HostError::Unknown(other),
        };
        Err(error)
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Unknown(code) => write!(f, "host returned unknown status {code}"),
            HostError::Malformed(error) => {
                write!(f, "host returned a malformed header map: {error}")
            }
            known => write!(f, "host returned {known:?}"),
        }
    }
}

#[cfg(target_arch = "wasm32")]
#[path = "imports_wasm.rs"]
mod imports;
#[cfg(not(target_arch = "wasm32"))]
#[path = "stand_ins.rs"]
pub(crate) mod imports;

pub use crate::headers::{
    decode_header_map, encode_header_map, encode_property_path, Headers, MapDecodeError,
};

/// Takes ownership of a buffer the host allocated in this VM, as the SDK does: the SDK's
/// allocator hands out exactly `size` bytes, so capacity and length are both `size`.
///
/// # Safety
/// `data` is null or was written by the host as the data pointer of a call that returned `Ok`,
/// with `size` the size it wrote beside it, and nothing else owns it.
unsafe fn take_host_buffer(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        Some(Vec::from_raw_parts(data, size, size))
    }
}

/// Proxy clock, nanoseconds since the Unix epoch.
pub fn current_time_nanos() -> Result<u64, HostError> {
    let mut nanos: u64 = 0;
    HostError::check(unsafe { imports::proxy_get_current_time_nanoseconds(&mut nanos) })?;
    Ok(nanos)
}

/// Asks for `on_tick` every `period` (at most `u32::MAX` milliseconds; zero stops the ticks).
pub fn set_tick_period(period: Duration) -> Result<(), HostError> {
    let millis = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    HostError::check(unsafe { imports::proxy_set_tick_period_milliseconds(millis) })
}

/// Writes `message` to Envoy's log. Never panics; the SDK's logger unwraps this same call.
pub fn log(level: LogLevel, message: &str) -> Result<(), HostError> {
    HostError::check(unsafe { imports::proxy_log(level as u32, message.as_ptr(), message.len()) })
}

struct HostLogger;

static HOST_LOGGER: HostLogger = HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let _ = log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Routes the `log` macros to Envoy's log through [`log`], up to `max_level`: the replacement
/// for `proxy_wasm::set_log_level`, whose logger unwraps every `proxy_log` status. Call it once,
/// instead of (never after) the SDK's.
pub fn install_logger(max_level: log::LevelFilter) {
    let _ = log::set_logger(&HOST_LOGGER);
    log::set_max_level(max_level);
}

/// `[start, start + max_size)` of a host buffer; `None` when the buffer does not exist.
pub fn get_buffer(
    buffer: BufferType,
    start: usize,
    max_size: usize,
) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let status = unsafe {
        imports::proxy_get_buffer_bytes(buffer as u32, start, max_size, &mut data, &mut size)
    };
    match HostError::check(status) {
        Ok(()) => Ok(unsafe { take_host_buffer(data, size) }),
        Err(HostError::NotFound) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Every pair of a header map, values as bytes (an absent map is an empty one).
pub fn get_header_map(map: MapType) -> Result<Vec<(String, Vec<u8>)>, HostError> {
    Ok(get_headers(map)?.to_pairs())
}

/// A header map as the host serialized it, checked once and read in place (no copy per header).
pub fn get_headers(map: MapType) -> Result<Headers, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    HostError::check(unsafe {
        imports::proxy_get_header_map_pairs(map as u32, &mut data, &mut size)
    })?;
    match unsafe { take_host_buffer(data, size) } {
        Some(bytes) => Headers::parse(bytes).map_err(HostError::Malformed),
        None => Ok(Headers::default()),
    }
}

/// Sets header `name` to `value`, replacing every value it had.
pub fn replace_header(map: MapType, name: &str, value: &str) -> Result<(), HostError> {
    HostError::check(unsafe {
        imports::proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Adds a value of header `name`, keeping any it has: cheaper for Envoy than a replace, which
/// first scans the map for the name.
pub fn add_header(map: MapType, name: &str, value: &str) -> Result<(), HostError> {
    HostError::check(unsafe {
        imports::proxy_add_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// The value of header `name` (`None` when absent): one lookup, not the whole map.
pub fn get_header(map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let status = unsafe {
        imports::proxy_get_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut size,
        )
    };
    match HostError::check(status) {
        Ok(()) => Ok(unsafe { take_host_buffer(data, size) }),
        Err(HostError::NotFound) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Removes every value of header `name`.
pub fn remove_header(map: MapType, name: &str) -> Result<(), HostError> {
    HostError::check(unsafe {
        imports::proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len())
    })
}

/// The value of a property, e.g. `["source", "address"]`; `None` when it is not set.
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    let path = encode_property_path(path);
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let status =
        unsafe { imports::proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    match HostError::check(status) {
        Ok(()) => Ok(unsafe { take_host_buffer(data, size) }),
        Err(HostError::NotFound) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Sets a property (in Envoy, filter state `wasm.<path>`).
pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), HostError> {
    let path = encode_property_path(path);
    HostError::check(unsafe {
        imports::proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len())
    })
}

/// Value and CAS token of a shared-data entry; `(None, None)` when there is no such entry.
pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    let status = unsafe {
        imports::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
    };
    match HostError::check(status) {
        Ok(()) => Ok((
            unsafe { take_host_buffer(data, size) },
            Some(cas).filter(|cas| *cas != 0),
        )),
        Err(HostError::NotFound) => Ok((None, None)),
        Err(error) => Err(error),
    }
}

/// Writes a shared-data entry; with `cas`, only if it is unchanged since the read that gave it
/// (`Err(HostError::CasMismatch)` otherwise).
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
    HostError::check(unsafe {
        imports::proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    })
}

/// Registers (or finds) this VM's shared queue `name` and returns its id.
pub fn register_shared_queue(name: &str) -> Result<u32, HostError> {
    let mut queue_id: u32 = 0;
    HostError::check(unsafe {
        imports::proxy_register_shared_queue(name.as_ptr(), name.len(), &mut queue_id)
    })?;
    Ok(queue_id)
}

/// Appends `item` to a shared queue.
pub fn enqueue_shared_queue(queue_id: u32, item: &[u8]) -> Result<(), HostError> {
    HostError::check(unsafe {
        imports::proxy_enqueue_shared_queue(queue_id, item.as_ptr(), item.len())
    })
}

/// Takes the oldest item of a shared queue; `None` when it is empty.
pub fn dequeue_shared_queue(queue_id: u32) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let status = unsafe { imports::proxy_dequeue_shared_queue(queue_id, &mut data, &mut size) };
    match HostError::check(status) {
        Ok(()) => Ok(unsafe { take_host_buffer(data, size) }),
        Err(HostError::Empty) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Answers the request from the filter; `grpc_status` is what Envoy answers a gRPC request with (`None`: Envoy maps
/// the HTTP status, as it does for any local reply).
pub fn send_http_response(
    status_code: u32,
    headers: &[(&str, &str)],
    body: &[u8],
    grpc_status: Option<i32>,
) -> Result<(), HostError> {
    let headers = encode_header_map(headers);
    HostError::check(unsafe {
        imports::proxy_send_local_response(
            status_code,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc_status.unwrap_or(-1),
        )
    })
}

/// Defines a metric and returns its id.
pub fn define_metric(metric_type: MetricType, name: &str) -> Result<u32, HostError> {
    let mut metric_id: u32 = 0;
    HostError::check(unsafe {
        imports::proxy_define_metric(
            metric_type as u32,
            name.as_ptr(),
            name.len(),
            &mut metric_id,
        )
    })?;
    Ok(metric_id)
}

/// Adds `offset` to a counter or gauge.
pub fn increment_metric(metric_id: u32, offset: i64) -> Result<(), HostError> {
    HostError::check(unsafe { imports::proxy_increment_metric(metric_id, offset) })
}

/// Sets a gauge (or adds to a counter, records into a histogram).
pub fn record_metric(metric_id: u32, value: u64) -> Result<(), HostError> {
    HostError::check(unsafe { imports::proxy_record_metric(metric_id, value) })
}

/// Starts an HTTP call to `cluster` and returns its token.
///
/// This one goes through the SDK on purpose: the SDK must record the token, or its
/// `proxy_on_http_call_response` export panics ("invalid token_id") when the answer arrives,
/// and only `hostcalls::dispatch_http_call` can record it. That function maps `BadArgument` and
/// `InternalFailure` to errors and panics on any other failure; Envoy's `httpCall` returns only
/// `Ok`, `BadArgument` (unknown cluster, missing `:path`/`:method`/`:authority`, negative
/// timeout) and `InternalFailure` (request not started), and proxy-wasm-cpp-host adds
/// `InvalidMemoryAccess` only for pointers outside the VM's memory, which slices cannot be.
pub fn dispatch_http_call(
    cluster: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<u32, HostError> {
    // Envoy rejects a timeout that is negative as an `int`; keep it in range rather than wrap.
    let timeout = timeout.min(Duration::from_millis(i32::MAX as u64));
    proxy_wasm::hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout)
        // `Err(Status::Ok)` cannot happen; were it to, the call did not start.
        .map_err(|status| {
            HostError::check(status as u32)
                .err()
                .unwrap_or(HostError::InternalFailure)
        })
}

#[cfg(test)]
mod tests;
