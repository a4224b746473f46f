//! The real `Host`: Envoy, through the never-panicking `abi` calls.

use std::time::Duration;

use proxy_wasm::types::{BufferType, MapType, MetricType};

use crate::headers::Headers;
use crate::host::{DispatchError, Host, MetricKind, WriteError};
use crate::proxy::abi;
use crate::sync::queue::Queue;

/// The real host: Envoy, through the never-panicking `abi` calls; each failure is what the
/// `Host` method documents (absent, ignored or an error value).
pub struct ProxyHost;

impl Host for ProxyHost {
    fn now_ms(&self) -> u64 {
        abi::current_time_nanos().map_or(0, |nanos| nanos / 1_000_000)
    }

    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match abi::get_shared_data(key) {
            Ok((value, cas)) => (value.filter(|v| !v.is_empty()), cas),
            Err(_) => (None, None),
        }
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        match abi::set_shared_data(key, value, cas) {
            Ok(()) => Ok(()),
            Err(abi::HostError::CasMismatch) => Err(WriteError::CasMismatch),
            Err(_) => Err(WriteError::Host),
        }
    }

    fn request_headers(&self) -> Headers {
        abi::get_headers(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let _ = match value {
            Some(value) => abi::replace_header(MapType::HttpRequestHeaders, name, value),
            None => abi::remove_header(MapType::HttpRequestHeaders, name),
        };
    }

    fn add_request_header(&self, name: &str, value: &str) {
        let _ = abi::add_header(MapType::HttpRequestHeaders, name, value);
    }

    fn set_response_header(&self, name: &str, value: &str) {
        let _ = abi::replace_header(MapType::HttpResponseHeaders, name, value);
    }

    fn response_status(&self) -> Option<u32> {
        let status = abi::get_header(MapType::HttpResponseHeaders, ":status").ok()??;
        std::str::from_utf8(&status).ok()?.parse().ok()
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        abi::get_property(path).ok().flatten()
    }

    fn write_property(&self, path: &[&str], value: &[u8]) {
        let _ = abi::set_property(path, value);
    }

    fn send_reply(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        grpc_status: Option<i32>,
    ) {
        let _ = abi::send_http_response(status, headers, body, grpc_status);
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        abi::define_metric(kind, name).ok()
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        let _ = abi::increment_metric(id, delta);
    }

    fn record_metric(&self, id: u32, value: u64) {
        let _ = abi::record_metric(id, value);
    }

    fn start_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, DispatchError> {
        abi::dispatch_http_call(cluster, headers, body, timeout).map_err(|error| match error {
            abi::HostError::BadArgument => DispatchError::BadArgument,
            _ => DispatchError::InternalFailure,
        })
    }

    fn http_call_status(&self) -> Option<u32> {
        let headers = abi::get_headers(MapType::HttpCallResponseHeaders).ok()?;
        std::str::from_utf8(headers.get(":status")?)
            .ok()?
            .parse()
            .ok()
    }

    fn http_call_body(&self, size: usize) -> Option<Vec<u8>> {
        abi::get_buffer(BufferType::HttpCallResponseBody, 0, size)
            .ok()
            .flatten()
    }
}

/// Envoy's shared queue.
pub struct ProxyQueue(pub u32);

impl Queue for ProxyQueue {
    fn enqueue(&self, item: &[u8]) -> bool {
        abi::enqueue_shared_queue(self.0, item).is_ok()
    }

    fn dequeue(&self) -> Option<Vec<u8>> {
        abi::dequeue_shared_queue(self.0).ok().flatten()
    }
}
