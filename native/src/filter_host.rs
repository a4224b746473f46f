//! The `Host` of one request in the native build: Envoy's header and reply callbacks on the
//! request's filter pointer, this process's shared data, Envoy's stats.
//!
//! Every call takes the filter pointer Envoy handed to `on_http_filter_new`; a `FilterHost`
//! lives inside the filter object Envoy destroys with `on_http_filter_destroy`, and is only
//! used within Envoy's hooks of that filter, on its worker thread, where the pointer is valid.

use std::ptr::NonNull;
use std::time::Duration;

use keygate::headers::Headers;
use keygate::host::{DispatchError, Host, MetricKind, WriteError};
use keygate::request::KEY_ID_PROPERTY;

use crate::abi::{self, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr, ModuleBuffer};
use crate::module::Module;

pub struct FilterHost {
    filter: FilterEnvoyPtr,
    /// The filter's configuration, borrowed rather than counted: an `Arc` per request would be
    /// two atomic writes to one cache line that every worker thread shares.
    module: NonNull<Module>,
}

impl FilterHost {
    /// # Safety
    /// `module` is the configuration Envoy created this filter from. Envoy holds a
    /// configuration until every filter made from it is destroyed and only then calls
    /// `on_http_filter_config_destroy` (which releases it), so it outlives this host.
    pub unsafe fn new(filter: FilterEnvoyPtr, module: &Module) -> FilterHost {
        FilterHost {
            filter,
            module: NonNull::from(module),
        }
    }

    fn module(&self) -> &Module {
        // SAFETY: see `new`.
        unsafe { self.module.as_ref() }
    }

    /// The bytes an Envoy getter wrote into a buffer, copied; `None` when it found nothing.
    /// `get` is called with this filter's pointer and the buffer to write.
    fn copied(
        &self,
        get: impl FnOnce(FilterEnvoyPtr, *mut EnvoyBuffer) -> bool,
    ) -> Option<Vec<u8>> {
        let mut value = EnvoyBuffer::NULL;
        if !get(self.filter, &mut value) {
            return None;
        }
        // SAFETY: a buffer Envoy just wrote, valid in this hook.
        unsafe { value.bytes() }.map(<[u8]>::to_vec)
    }

    /// The first value of header `name` of `header_type`, copied.
    fn header(&self, header_type: abi::HeaderType, name: &str) -> Option<Vec<u8>> {
        // SAFETY: a live filter pointer (module docs); Envoy writes the buffer.
        self.copied(|filter, value| unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                filter,
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                value,
                0,
                std::ptr::null_mut(),
            )
        })
    }

    fn attribute_string(&self, attribute: abi::AttributeId) -> Option<Vec<u8>> {
        // SAFETY: as `header`.
        self.copied(|filter, value| unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                filter, attribute, value,
            )
        })
    }

    fn attribute_int(&self, attribute: abi::AttributeId) -> Option<u64> {
        let mut value = 0u64;
        // SAFETY: as `header`.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_int(
                self.filter,
                attribute,
                &mut value,
            )
        };
        found.then_some(value)
    }

    fn set_header(&self, header_type: abi::HeaderType, name: &str, value: Option<&str>) {
        let value = value.map_or(ModuleBuffer::NULL, |value| {
            ModuleBuffer::of(value.as_bytes())
        });
        // SAFETY: as `header`; the buffers outlive the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.filter,
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                value,
            );
        }
    }
}

impl Host for FilterHost {
    fn now_ms(&self) -> u64 {
        crate::clock::now_ms()
    }

    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.module().store.data.get(key)
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        self.module().store.data.set(key, value, cas)
    }

    fn request_headers(&self) -> Headers {
        // SAFETY: as `header`; Envoy fills exactly `size` entries, valid in this hook.
        unsafe {
            let size = abi::envoy_dynamic_module_callback_http_get_headers_size(
                self.filter,
                abi::REQUEST_HEADER,
            );
            let mut entries = vec![EnvoyHttpHeader::EMPTY; size];
            if size == 0
                || !abi::envoy_dynamic_module_callback_http_get_headers(
                    self.filter,
                    abi::REQUEST_HEADER,
                    entries.as_mut_ptr(),
                )
            {
                return Headers::default();
            }
            let pairs: Vec<(&[u8], &[u8])> = entries
                .iter()
                .filter_map(|entry| {
                    let name = EnvoyBuffer {
                        ptr: entry.key_ptr,
                        length: entry.key_length,
                    }
                    .bytes()?;
                    let value = EnvoyBuffer {
                        ptr: entry.value_ptr,
                        length: entry.value_length,
                    }
                    .bytes()
                    .unwrap_or_default();
                    Some((name, value))
                })
                .collect();
            Headers::from_pairs(&pairs)
        }
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.set_header(abi::REQUEST_HEADER, name, value);
    }

    fn add_request_header(&self, name: &str, value: &str) {
        // SAFETY: as `header`.
        unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                self.filter,
                abi::REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            );
        }
    }

    fn set_response_header(&self, name: &str, value: &str) {
        self.set_header(abi::RESPONSE_HEADER, name, Some(value));
    }

    fn response_status(&self) -> Option<u32> {
        let status = self.header(abi::RESPONSE_HEADER, ":status")?;
        std::str::from_utf8(&status).ok()?.parse().ok()
    }

    /// The properties Keygate reads, from Envoy's attributes. Envoy's dynamic metadata (where
    /// `jwt_authn` puts verified claims) is not readable as a nested structure through the ABI,
    /// so claim paths read as absent: docs/native.md.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match path {
            ["source", "address"] => self.attribute_string(abi::ATTRIBUTE_SOURCE_ADDRESS),
            ["response", "flags"] => self
                .attribute_int(abi::ATTRIBUTE_RESPONSE_FLAGS)
                .map(|flags| flags.to_le_bytes().to_vec()),
            _ => None,
        }
    }

    fn write_property(&self, path: &[&str], value: &[u8]) {
        if path != [KEY_ID_PROPERTY] {
            return;
        }
        // SAFETY: as `header`.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.filter,
                ModuleBuffer::of(KEY_ID_PROPERTY.as_bytes()),
                ModuleBuffer::of(value),
            );
        }
    }

    /// Envoy's local reply. The ABI takes no gRPC status (Envoy passes 0, `OK`, for a gRPC
    /// request): the status goes as a `grpc-status` header, which Envoy keeps when it turns the
    /// reply into a trailers-only gRPC answer (the body becoming `grpc-message`).
    fn send_reply(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        grpc_status: Option<i32>,
    ) {
        let grpc_status = grpc_status.map(|code| code.to_string());
        let mut headers: Vec<abi::ModuleHttpHeader> = headers
            .iter()
            .map(|(name, value)| abi::ModuleHttpHeader::of(name, value))
            .chain(
                grpc_status
                    .as_deref()
                    .map(|code| abi::ModuleHttpHeader::of("grpc-status", code)),
            )
            .collect();
        // SAFETY: as `header`; the vectors outlive the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.filter,
                status,
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(b"keygate"),
            );
        }
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        self.module().stats.define(kind, name)
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        self.module().stats.increment(id, delta)
    }

    fn record_metric(&self, id: u32, value: u64) {
        self.module().stats.set(id, value)
    }

    /// Requests never call out: the background thread does (`background.rs`).
    fn start_http_call(
        &self,
        _cluster: &str,
        _headers: &[(&str, &str)],
        _body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<u32, DispatchError> {
        Err(DispatchError::InternalFailure)
    }

    fn http_call_status(&self) -> Option<u32> {
        None
    }

    fn http_call_body(&self, _size: usize) -> Option<Vec<u8>> {
        None
    }
}
