//! What the filter needs from its host, behind a trait so that everything but `proxy/` runs on
//! the host in tests: `FakeHost` here, the real one in `proxy/host.rs`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use crate::headers::Headers;

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// Someone else wrote the value since we read it.
    CasMismatch,
    /// Any other host failure.
    Host,
}

/// Why the host did not start an HTTP call (Envoy's `httpCall` has no other failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchError {
    /// An unknown cluster, or a missing `:method`, `:path` or `:authority`.
    BadArgument,
    /// The call could not be started.
    InternalFailure,
}

/// Whether a metric adds up or is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// Everything Keygate asks of Envoy. Host failures never reach callers as panics: a read that
/// fails is `None`, a write that fails is ignored or an error value, as each method says.
pub trait Host {
    /// Proxy clock, milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Value and CAS token of a shared-data entry (`None` value when absent or empty).
    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes a shared-data entry; with `cas`, only if it has not changed since that read.
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError>;

    /// The request's headers, values as bytes (they need not be UTF-8); empty if unreadable.
    fn request_headers(&self) -> Headers;
    /// Sets (`Some`) or removes (`None`) a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    /// Adds a request header the request does not have (the caller knows from the map it read):
    /// one step less for Envoy than `set_request_header`, which looks for the name first.
    fn add_request_header(&self, name: &str, value: &str);
    /// Sets a response header.
    fn set_response_header(&self, name: &str, value: &str);
    /// The response's `:status` (in the response headers phase; `None` when unreadable).
    fn response_status(&self) -> Option<u32>;
    /// A property such as `["source", "address"]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Sets a property (filter state).
    fn write_property(&self, path: &[&str], value: &[u8]);
    /// Answers the request from the filter; the upstream is not called. For a gRPC request
    /// Envoy answers `grpc_status` (its own mapping of `status` when `None`), `body` becoming
    /// the `grpc-message`.
    fn send_reply(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        grpc_status: Option<i32>,
    );

    /// Defines a metric; `None` if the host refused.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    /// Adds to a counter.
    fn increment_metric(&self, id: u32, delta: i64);
    /// Sets a gauge.
    fn record_metric(&self, id: u32, value: u64);

    /// Starts an HTTP call to `cluster`; its answer arrives later, under the returned token.
    fn start_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, DispatchError>;
    /// While an answer is delivered: its HTTP status (`None`: the call ended without one).
    fn http_call_status(&self) -> Option<u32>;
    /// While an answer is delivered: its body, `size` bytes as announced (`None`: unreadable).
    fn http_call_body(&self, size: usize) -> Option<Vec<u8>>;
}

/// A borrowed host is a host: request contexts own theirs, tests lend them a `&FakeHost`.
impl<T: Host + ?Sized> Host for &T {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        (**self).get_shared(key)
    }
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        (**self).set_shared(key, value, cas)
    }
    fn request_headers(&self) -> Headers {
        (**self).request_headers()
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        (**self).set_request_header(name, value)
    }
    fn add_request_header(&self, name: &str, value: &str) {
        (**self).add_request_header(name, value)
    }
    fn set_response_header(&self, name: &str, value: &str) {
        (**self).set_response_header(name, value)
    }
    fn response_status(&self) -> Option<u32> {
        (**self).response_status()
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        (**self).property(path)
    }
    fn write_property(&self, path: &[&str], value: &[u8]) {
        (**self).write_property(path, value)
    }
    fn send_reply(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        grpc_status: Option<i32>,
    ) {
        (**self).send_reply(status, headers, body, grpc_status)
    }
    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        (**self).define_metric(kind, name)
    }
    fn increment_metric(&self, id: u32, delta: i64) {
        (**self).increment_metric(id, delta)
    }
    fn record_metric(&self, id: u32, value: u64) {
        (**self).record_metric(id, value)
    }
    fn start_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, DispatchError> {
        (**self).start_http_call(cluster, headers, body, timeout)
    }
    fn http_call_status(&self) -> Option<u32> {
        (**self).http_call_status()
    }
    fn http_call_body(&self, size: usize) -> Option<Vec<u8>> {
        (**self).http_call_body(size)
    }
}

/// A reply the filter sent instead of passing the request on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentReply {
    pub status: u32,
    pub grpc_status: Option<i32>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// An HTTP call the filter started through `FakeHost`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchedCall {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl DispatchedCall {
    /// A header's value (pseudo-headers included: `:path`, `:method`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.header(":path").unwrap_or_default()
    }
}

/// Something another worker does in the middle of this one's work (see `FakeHost::interleave`).
pub type Interleaved = Box<dyn FnOnce(&FakeHost)>;

/// An in-memory host for tests, with the same CAS semantics as Envoy's shared data.
#[derive(Default)]
pub struct FakeHost {
    pub now: Cell<u64>,
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    /// Makes the next N CAS writes fail, to exercise retries.
    pub fail_next_cas: Cell<u32>,
    /// Runs once, just before the first write of a key starting with the given prefix: how a
    /// test makes another worker (another thread in Envoy) act in the middle of this one's work.
    interleaved: RefCell<Option<(String, Interleaved)>>,
    request_headers: RefCell<Vec<(String, Vec<u8>)>>,
    response_headers: RefCell<Vec<(String, String)>>,
    properties: RefCell<HashMap<String, Vec<u8>>>,
    reply: RefCell<Option<SentReply>>,
    /// Metric names by id, and their values.
    metrics: RefCell<Vec<(String, i64)>>,
    /// Calls dispatched and not yet taken by `take_calls`.
    calls: RefCell<Vec<DispatchedCall>>,
    last_token: Cell<u32>,
    /// While set, every dispatch fails with this error.
    pub refuse_dispatch: Cell<Option<DispatchError>>,
    /// The answer being delivered (see `respond`): status and body.
    response: RefCell<(Option<u32>, Vec<u8>)>,
}

impl FakeHost {
    pub fn at(now_ms: u64) -> FakeHost {
        let host = FakeHost::default();
        host.now.set(now_ms);
        host
    }

    pub fn entry_count(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Bytes held in entry values: what shared data's memory follows.
    pub fn value_bytes(&self) -> usize {
        self.entries.borrow().values().map(|(v, _)| v.len()).sum()
    }

    /// Starts a new request with these headers (the reply and response headers are cleared).
    pub fn request(&self, headers: &[(&str, &str)]) {
        *self.request_headers.borrow_mut() = headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
            .collect();
        self.response_headers.borrow_mut().clear();
        *self.reply.borrow_mut() = None;
    }

    /// Starts a new request whose header values are any bytes, as Envoy may hand them over.
    pub fn request_bytes(&self, headers: &[(&str, &[u8])]) {
        *self.request_headers.borrow_mut() = headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_vec()))
            .collect();
        self.response_headers.borrow_mut().clear();
        *self.reply.borrow_mut() = None;
    }

    /// A request header as it stands now (after the filter changed them).
    pub fn request_header(&self, name: &str) -> Option<String> {
        self.request_headers
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Every request header name as it stands now.
    pub fn request_header_names(&self) -> Vec<String> {
        self.request_headers
            .borrow()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn response_header(&self, name: &str) -> Option<String> {
        self.response_headers
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    pub fn set_peer(&self, property: &[&str], value: &str) {
        self.put_property(property, value.as_bytes());
    }

    /// Sets a property to raw bytes (Envoy's integers are 8 bytes, little-endian).
    pub fn put_property(&self, property: &[&str], value: &[u8]) {
        self.properties
            .borrow_mut()
            .insert(property.join("."), value.to_vec());
    }

    pub fn property_value(&self, property: &[&str]) -> Option<Vec<u8>> {
        self.properties.borrow().get(&property.join(".")).cloned()
    }

    /// The local reply sent for the current request, if any.
    pub fn reply(&self) -> Option<SentReply> {
        self.reply.borrow().clone()
    }

    /// A metric's value by name (0 if never defined or touched).
    pub fn metric(&self, name: &str) -> i64 {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// The calls dispatched since the last time they were taken, oldest first.
    pub fn take_calls(&self) -> Vec<DispatchedCall> {
        std::mem::take(&mut *self.calls.borrow_mut())
    }

    /// Makes `status` and `body` the answer being delivered, as Envoy does for the length of
    /// `on_http_call_response`; returns the body size to pass on with the call's token.
    pub fn respond(&self, status: Option<u32>, body: &[u8]) -> usize {
        *self.response.borrow_mut() = (status, body.to_vec());
        body.len()
    }

    /// Runs `other` just before the next write of a key that starts with `prefix`.
    pub fn interleave(&self, prefix: &str, other: impl FnOnce(&FakeHost) + 'static) {
        *self.interleaved.borrow_mut() = Some((prefix.to_string(), Box::new(other)));
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }

    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.entries.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()).filter(|v| !v.is_empty()), Some(*cas)),
            None => (None, None),
        }
    }

    fn request_headers(&self) -> Headers {
        Headers::from_pairs(&self.request_headers.borrow())
    }

    fn add_request_header(&self, name: &str, value: &str) {
        self.request_headers
            .borrow_mut()
            .push((name.to_string(), value.as_bytes().to_vec()));
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let mut headers = self.request_headers.borrow_mut();
        headers.retain(|(n, _)| n != name);
        if let Some(value) = value {
            headers.push((name.to_string(), value.as_bytes().to_vec()));
        }
    }

    fn set_response_header(&self, name: &str, value: &str) {
        let mut headers = self.response_headers.borrow_mut();
        headers.retain(|(n, _)| n != name);
        headers.push((name.to_string(), value.to_string()));
    }

    fn response_status(&self) -> Option<u32> {
        self.response_header(":status")?.parse().ok()
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.property_value(path)
    }

    fn write_property(&self, path: &[&str], value: &[u8]) {
        self.properties
            .borrow_mut()
            .insert(path.join("."), value.to_vec());
    }

    fn send_reply(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        grpc_status: Option<i32>,
    ) {
        *self.reply.borrow_mut() = Some(SentReply {
            status,
            grpc_status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
        });
    }

    fn define_metric(&self, _kind: MetricKind, name: &str) -> Option<u32> {
        let mut metrics = self.metrics.borrow_mut();
        let index = match metrics.iter().position(|(n, _)| n == name) {
            Some(index) => index,
            None => {
                metrics.push((name.to_string(), 0));
                metrics.len() - 1
            }
        };
        u32::try_from(index + 1).ok()
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        if let Some((_, value)) = self.metrics.borrow_mut().get_mut(id as usize - 1) {
            *value += delta;
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        if let Some((_, current)) = self.metrics.borrow_mut().get_mut(id as usize - 1) {
            *current = i64::try_from(value).unwrap_or(i64::MAX);
        }
    }

    fn start_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, DispatchError> {
        if let Some(error) = self.refuse_dispatch.get() {
            return Err(error);
        }
        let token = self.last_token.get() + 1;
        self.last_token.set(token);
        self.calls.borrow_mut().push(DispatchedCall {
            token,
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.map(<[u8]>::to_vec),
            timeout,
        });
        Ok(token)
    }

    fn http_call_status(&self) -> Option<u32> {
        self.response.borrow().0
    }

    fn http_call_body(&self, size: usize) -> Option<Vec<u8>> {
        let response = self.response.borrow();
        Some(response.1[..size.min(response.1.len())].to_vec())
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        let due = {
            let mut slot = self.interleaved.borrow_mut();
            match slot.as_ref() {
                Some((prefix, _)) if key.starts_with(prefix.as_str()) => slot.take(),
                _ => None,
            }
        };
        if let Some((_, other)) = due {
            other(self);
        }
        let mut entries = self.entries.borrow_mut();
        if cas.is_some() && self.fail_next_cas.get() > 0 {
            self.fail_next_cas.set(self.fail_next_cas.get() - 1);
            return Err(WriteError::CasMismatch);
        }
        if let (Some(expected), Some((_, current))) = (cas, entries.get(key)) {
            if expected != *current {
                return Err(WriteError::CasMismatch);
            }
        }
        let next = self.next_cas.get().wrapping_add(1).max(1);
        self.next_cas.set(next);
        entries.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}
