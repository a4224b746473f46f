//! An Envoy dynamic-module HTTP filter that lets every request through untouched: loaded like
//! Keygate's native build, it measures what Envoy charges for running any dynamic-module filter
//! on the request path (the filter object, the hooks' calls), apart from what Keygate does.
//! Every hook Envoy requires of an HTTP filter module is here; each continues.

use std::ffi::c_void;
use std::os::raw::c_char;

type EnvoyPtr = *mut c_void;
type ModulePtr = *const c_void;

/// Any non-null pointer serves as the configuration and every filter: there is no state.
static STATELESS: u8 = 0;

fn stateless() -> ModulePtr {
    (&STATELESS as *const u8).cast()
}

#[repr(C)]
pub struct Buffer {
    ptr: *const c_char,
    length: usize,
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    c"v0.2.0".as_ptr()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _: EnvoyPtr,
    _: Buffer,
    _: Buffer,
) -> ModulePtr {
    stateless()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(_: ModulePtr, _: EnvoyPtr) -> ModulePtr {
    stateless()
}

/// Hooks that return a status: 0 is `Continue` in each of them.
macro_rules! continues {
    ($($name:ident($($arg:ty),*);)*) => {$(
        #[no_mangle]
        pub extern "C" fn $name($(_: $arg),*) -> u32 {
            0
        }
    )*};
}

/// Hooks with nothing to return.
macro_rules! ignores {
    ($($name:ident($($arg:ty),*);)*) => {$(
        #[no_mangle]
        pub extern "C" fn $name($(_: $arg),*) {}
    )*};
}

continues! {
    envoy_dynamic_module_on_http_filter_request_headers(EnvoyPtr, ModulePtr, bool);
    envoy_dynamic_module_on_http_filter_request_body(EnvoyPtr, ModulePtr, bool);
    envoy_dynamic_module_on_http_filter_request_trailers(EnvoyPtr, ModulePtr);
    envoy_dynamic_module_on_http_filter_response_headers(EnvoyPtr, ModulePtr, bool);
    envoy_dynamic_module_on_http_filter_response_body(EnvoyPtr, ModulePtr, bool);
    envoy_dynamic_module_on_http_filter_response_trailers(EnvoyPtr, ModulePtr);
    envoy_dynamic_module_on_http_filter_local_reply(EnvoyPtr, ModulePtr, u32, Buffer, bool);
}

ignores! {
    envoy_dynamic_module_on_http_filter_config_destroy(ModulePtr);
    envoy_dynamic_module_on_http_filter_destroy(ModulePtr);
    envoy_dynamic_module_on_http_filter_stream_complete(EnvoyPtr, ModulePtr);
    envoy_dynamic_module_on_http_filter_http_callout_done(
        EnvoyPtr, ModulePtr, u64, u32, *mut c_void, usize, *mut c_void, usize);
    envoy_dynamic_module_on_http_filter_http_stream_headers(
        EnvoyPtr, ModulePtr, u64, *mut c_void, usize, bool);
    envoy_dynamic_module_on_http_filter_http_stream_data(
        EnvoyPtr, ModulePtr, u64, *const c_void, usize, bool);
    envoy_dynamic_module_on_http_filter_http_stream_trailers(
        EnvoyPtr, ModulePtr, u64, *mut c_void, usize);
    envoy_dynamic_module_on_http_filter_http_stream_complete(EnvoyPtr, ModulePtr, u64);
    envoy_dynamic_module_on_http_filter_http_stream_reset(EnvoyPtr, ModulePtr, u64, u32);
    envoy_dynamic_module_on_http_filter_scheduled(EnvoyPtr, ModulePtr, u64);
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
        EnvoyPtr, ModulePtr);
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
        EnvoyPtr, ModulePtr);
}
