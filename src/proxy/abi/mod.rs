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
//! How it was checked: the unit tests below feed every status 0..=13 and some unknown ones to
//! every wrapper through stand-in imports (used on every target but wasm32), and give the decoder
//! every truncation of a valid map, every single-byte corruption of one, and hand-made garbage
//! (huge counts and sizes, missing NULs, trailing bytes). `tests/e2e/test_no_panicking_hostcalls.py`
//! fails when a file other than this one calls a panicking SDK function.
//!
//! One call still goes through the SDK: [`dispatch_http_call`], see there why.
//!
//! Longer than most files because every wrapper is tested against every status beside the code
//! (about 370 lines of code).

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

/// Answers the request from the filter, with no gRPC status.
pub fn send_http_response(
    status_code: u32,
    headers: &[(&str, &str)],
    body: &[u8],
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
            -1,
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
mod tests {
    use super::imports::{answer, take_calls, Reply};
    use super::*;
    use crate::headers::sample::{sample_pairs, SAMPLE_MAP};

    /// Every code the ABI defines, one past them, and two far-off ones.
    const STATUSES: [u32; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 99, u32::MAX];

    fn reply(status: u32, data: Option<&[u8]>, number: u64) {
        answer(Reply {
            status,
            data: data.map(<[u8]>::to_vec),
            number,
        });
    }

    #[test]
    fn check_maps_every_status() {
        let cases = [
            (0, None),
            (1, Some(HostError::NotFound)),
            (2, Some(HostError::BadArgument)),
            (3, Some(HostError::SerializationFailure)),
            (4, Some(HostError::ParseFailure)),
            (5, Some(HostError::BadExpression)),
            (6, Some(HostError::InvalidMemoryAccess)),
            (7, Some(HostError::Empty)),
            (8, Some(HostError::CasMismatch)),
            (9, Some(HostError::ResultMismatch)),
            (10, Some(HostError::InternalFailure)),
            (11, Some(HostError::BrokenConnection)),
            (12, Some(HostError::Unimplemented)),
            (13, Some(HostError::Unknown(13))),
            (u32::MAX, Some(HostError::Unknown(u32::MAX))),
        ];
        for (status, expected) in cases {
            assert_eq!(HostError::check(status).err(), expected, "status {status}");
        }
    }

    #[test]
    fn no_wrapper_panics_on_any_status() {
        for status in STATUSES {
            for data in [
                None,
                Some(&b""[..]),
                Some(&b"garbage"[..]),
                Some(SAMPLE_MAP),
            ] {
                reply(status, data, 7);
                let _ = current_time_nanos();
                let _ = set_tick_period(Duration::from_secs(u64::MAX));
                let _ = log(LogLevel::Info, "message");
                let _ = get_buffer(BufferType::HttpCallResponseBody, 0, 10);
                let _ = get_header_map(MapType::HttpRequestHeaders);
                let _ = replace_header(MapType::HttpRequestHeaders, "name", "value");
                let _ = remove_header(MapType::HttpRequestHeaders, "name");
                let _ = get_property(&["source", "address"]);
                let _ = set_property(&["keygate_key_id"], b"key");
                let _ = get_shared_data("key");
                let _ = set_shared_data("key", b"value", Some(3));
                let _ = register_shared_queue("queue");
                let _ = enqueue_shared_queue(1, b"item");
                let _ = dequeue_shared_queue(1);
                let _ = send_http_response(401, &[("www-authenticate", "x")], b"{}");
                let _ = define_metric(MetricType::Counter, "name");
                let _ = increment_metric(1, 1);
                let _ = record_metric(1, 1);
            }
        }
        take_calls();
    }

    #[test]
    fn statuses_become_errors_and_absence_becomes_none() {
        for status in STATUSES {
            reply(status, Some(b"value"), 9);
            let expected = HostError::check(status);
            assert_eq!(
                replace_header(MapType::HttpResponseHeaders, "n", "v"),
                expected
            );
            assert_eq!(remove_header(MapType::HttpRequestHeaders, "n"), expected);
            assert_eq!(set_property(&["p"], b"v"), expected);
            assert_eq!(set_shared_data("k", b"v", None), expected);
            assert_eq!(send_http_response(403, &[], b""), expected);
            assert_eq!(increment_metric(1, 1), expected);
            assert_eq!(record_metric(1, 1), expected);
            assert_eq!(enqueue_shared_queue(1, b"v"), expected);
            assert_eq!(current_time_nanos(), expected.map(|()| 9));
            assert_eq!(define_metric(MetricType::Gauge, "g"), expected.map(|()| 9));
            assert_eq!(register_shared_queue("q"), expected.map(|()| 9));
            let value = Some(b"value".to_vec());
            let (buffer_value, queue_value) = match expected {
                Ok(()) => (Ok(value.clone()), Ok(value.clone())),
                Err(HostError::NotFound) => (Ok(None), Err(HostError::NotFound)),
                Err(HostError::Empty) => (Err(HostError::Empty), Ok(None)),
                Err(error) => (Err(error), Err(error)),
            };
            assert_eq!(
                get_buffer(BufferType::PluginConfiguration, 0, 5),
                buffer_value
            );
            assert_eq!(get_property(&["p"]), buffer_value);
            assert_eq!(dequeue_shared_queue(1), queue_value);
            assert_eq!(
                get_shared_data("k"),
                match expected {
                    Ok(()) => Ok((value, Some(9))),
                    Err(HostError::NotFound) => Ok((None, None)),
                    Err(error) => Err(error),
                }
            );
        }
        take_calls();
    }

    #[test]
    fn header_maps_are_decoded_and_bad_ones_reported() {
        reply(0, Some(SAMPLE_MAP), 0);
        assert_eq!(
            get_header_map(MapType::HttpRequestHeaders),
            Ok(sample_pairs())
        );
        reply(0, None, 0);
        assert_eq!(
            get_header_map(MapType::HttpCallResponseHeaders),
            Ok(Vec::new())
        );
        reply(0, Some(&SAMPLE_MAP[..20]), 0);
        assert_eq!(
            get_header_map(MapType::HttpRequestHeaders),
            Err(HostError::Malformed(MapDecodeError::Truncated))
        );
        reply(1, Some(SAMPLE_MAP), 0);
        assert_eq!(
            get_header_map(MapType::HttpRequestHeaders),
            Err(HostError::NotFound)
        );
        take_calls();
    }

    #[test]
    fn shared_data_without_a_cas_token_has_none() {
        reply(0, Some(b"v"), 0);
        assert_eq!(get_shared_data("k"), Ok((Some(b"v".to_vec()), None)));
        reply(0, None, 4);
        assert_eq!(get_shared_data("k"), Ok((None, Some(4))));
        take_calls();
    }

    #[test]
    fn arguments_reach_the_host_in_abi_form() {
        take_calls();
        reply(0, None, 0);
        set_property(&["keygate_key_id"], b"key_1").unwrap();
        get_property(&["source", "address"]).unwrap();
        send_http_response(401, &[("www-authenticate", "Bearer")], b"{}").unwrap();
        replace_header(MapType::HttpRequestHeaders, "x-keygate-team", "core").unwrap();
        let calls = take_calls();
        let seen: Vec<(&str, Vec<Vec<u8>>)> =
            calls.iter().map(|c| (c.name, c.bytes.clone())).collect();
        assert_eq!(
            seen,
            vec![
                (
                    "proxy_set_property",
                    vec![b"keygate_key_id".to_vec(), b"key_1".to_vec()]
                ),
                ("proxy_get_property", vec![b"source\0address".to_vec()]),
                (
                    "proxy_send_local_response",
                    vec![
                        Vec::new(),
                        b"{}".to_vec(),
                        encode_header_map(&[("www-authenticate", "Bearer")])
                    ]
                ),
                (
                    "proxy_replace_header_map_value",
                    vec![b"x-keygate-team".to_vec(), b"core".to_vec()]
                ),
            ]
        );
    }

    #[test]
    fn host_errors_read_well() {
        assert_eq!(
            HostError::BadArgument.to_string(),
            "host returned BadArgument"
        );
        assert_eq!(
            HostError::Unknown(42).to_string(),
            "host returned unknown status 42"
        );
        assert_eq!(
            HostError::Malformed(MapDecodeError::MissingNul).to_string(),
            "host returned a malformed header map: a string is not NUL-terminated"
        );
    }
}
