//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`): each turns Envoy's pointers back
//! into our objects and hands the event to the same request flow as the Wasm build
//! (`keygate::request::RequestFilter`). Envoy requires every hook of an HTTP filter module to
//! exist; the ones Keygate has no use for (callouts, schedulers, request bodies) continue.
//!
//! Ownership: a configuration is an `Arc<Module>` given to Envoy as a raw pointer in
//! `config_new` and taken back in `config_destroy`; a filter is a `Box<Filter>` given in
//! `filter_new` and taken back in `filter_destroy`. Envoy calls a filter's hooks on one worker
//! thread, one at a time, between those two.

// The hooks are Envoy's entry points, safe to call only as the ABI says (with the pointers it
// describes): they are `extern "C"` for Envoy, not a Rust API, and each says in a SAFETY note
// what of that contract it relies on.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::rc::Rc;
use std::sync::Arc;

use keygate::request::{RequestFilter, Verdict, Worker};
use log::error;

use crate::abi::{self, EnvoyBuffer, FilterConfigEnvoyPtr, FilterConfigModulePtr, FilterEnvoyPtr};
use crate::abi::{EnvoyHttpHeader, FilterModulePtr};
use crate::envoy_stats::EnvoyStats;
use crate::filter_host::FilterHost;
use crate::module::Module;

/// One request.
struct Filter {
    request: RequestFilter<FilterHost>,
    worker: Rc<Worker>,
}

/// The filter behind Envoy's module pointer.
///
/// # Safety
/// `filter` is a pointer `filter_new` returned and `filter_destroy` has not yet taken back.
unsafe fn filter<'a>(filter: FilterModulePtr) -> Option<&'a mut Filter> {
    (filter as *mut Filter).as_mut()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const std::os::raw::c_char {
    crate::logger::install();
    crate::logger::say_panics();
    crate::pin::keep_loaded();
    abi::ABI_VERSION.as_ptr()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: FilterConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> FilterConfigModulePtr {
    // SAFETY: Envoy's buffers, valid during this call (read, not kept).
    let (name, bytes) = unsafe { (name.bytes(), config.bytes()) };
    let name = String::from_utf8_lossy(name.unwrap_or_default());
    let stats = Arc::new(EnvoyStats::new(config_envoy));
    // `envoy --mode validate` checks the configuration: no background thread, no calls.
    // SAFETY: a plain query; `config_new` runs on the main thread, as it requires.
    let validating = unsafe { abi::envoy_dynamic_module_callback_is_validation_mode() };
    match Module::start(&name, bytes.unwrap_or_default(), stats, !validating) {
        Ok(module) => {
            log::info!(
                "keygate (native) {} configured: control {:?}, fail mode {:?}",
                env!("CARGO_PKG_VERSION"),
                module.config.control.urls,
                module.config.fail_mode
            );
            Arc::into_raw(module).cast()
        }
        Err(err) => {
            error!("keygate: {err}");
            std::ptr::null()
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: FilterConfigModulePtr,
) {
    if config.is_null() {
        return;
    }
    // SAFETY: the pointer `config_new` made with `Arc::into_raw`; Envoy calls this once, after
    // every filter of the configuration is destroyed.
    let module = unsafe { Arc::from_raw(config.cast::<Module>()) };
    module.stop();
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: FilterConfigModulePtr,
    filter_envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    // SAFETY: `config` is what `config_new` returned, alive while Envoy makes filters of it;
    // the filter pointer is Envoy's for this stream (`FilterHost::new`).
    let Some(module) = (unsafe { config.cast::<Module>().as_ref() }) else {
        return std::ptr::null();
    };
    let worker = unsafe { Module::worker(module) };
    let host = unsafe { FilterHost::new(filter_envoy, module) };
    let filter = Filter {
        request: RequestFilter::new(0, Rc::clone(&worker), host),
        worker,
    };
    Box::into_raw(Box::new(filter)).cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: FilterModulePtr) {
    if !filter.is_null() {
        // SAFETY: the pointer `filter_new` made with `Box::into_raw`; Envoy calls this once.
        drop(unsafe { Box::from_raw(filter as *mut Filter) });
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _filter_envoy: FilterEnvoyPtr,
    module_filter: FilterModulePtr,
    _end_of_stream: bool,
) -> abi::HeadersStatus {
    // SAFETY: a filter of `filter_new`, not yet destroyed (Envoy's hook order).
    let Some(filter) = (unsafe { filter(module_filter) }) else {
        return abi::HEADERS_CONTINUE;
    };
    match filter.request.on_request_headers() {
        Verdict::Continue => abi::HEADERS_CONTINUE,
        Verdict::Stop => abi::HEADERS_STOP_ITERATION,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _filter_envoy: FilterEnvoyPtr,
    module_filter: FilterModulePtr,
    end_of_stream: bool,
) -> abi::HeadersStatus {
    // SAFETY: as in `request_headers`.
    if let Some(filter) = unsafe { filter(module_filter) } {
        filter.request.on_response_headers(end_of_stream);
    }
    abi::HEADERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy: FilterEnvoyPtr,
    module_filter: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: as in `request_headers`.
    if let Some(filter) = unsafe { filter(module_filter) } {
        filter.request.on_response_data(end_of_stream);
    }
    abi::DATA_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy: FilterEnvoyPtr,
    module_filter: FilterModulePtr,
) -> u32 {
    // SAFETY: as in `request_headers`.
    if let Some(filter) = unsafe { filter(module_filter) } {
        filter.request.on_response_data(true);
    }
    abi::TRAILERS_CONTINUE
}

/// The stream's end (before access logs): what the Wasm build does in its log phase, then the
/// worker's batched request counters into Envoy's stats (a worker thread has no tick of its
/// own here, so they go at every request's end: one atomic add each).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy: FilterEnvoyPtr,
    module_filter: FilterModulePtr,
) {
    // SAFETY: as in `request_headers`.
    if let Some(filter) = unsafe { filter(module_filter) } {
        filter.request.on_stream_end();
        filter.worker.metrics.flush(filter.request.host());
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy: FilterEnvoyPtr,
    _module_filter: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    abi::DATA_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy: FilterEnvoyPtr,
    _module_filter: FilterModulePtr,
) -> u32 {
    abi::TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy: FilterEnvoyPtr,
    _module_filter: FilterModulePtr,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    abi::LOCAL_REPLY_CONTINUE
}

// Hooks Envoy requires but Keygate never triggers: it starts no callouts, streams or scheduled
// events from a filter (its background thread calls the control service itself).

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy: FilterEnvoyPtr,
    _module_filter: FilterModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *mut EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: FilterEnvoyPtr,
    _module_filter: FilterModulePtr,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: FilterEnvoyPtr,
    _module_filter: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: FilterEnvoyPtr,
    _module_filter: FilterModulePtr,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: FilterEnvoyPtr,
    _module_filter: FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: FilterEnvoyPtr,
    _module_filter: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy: FilterEnvoyPtr,
    _module_filter: FilterModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: FilterEnvoyPtr,
    _module_filter: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: FilterEnvoyPtr,
    _module_filter: FilterModulePtr,
) {
}
