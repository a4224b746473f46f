//! A proxy-wasm HTTP filter that lets every request through untouched. Loaded exactly like
//! Keygate (same runtime, same `vm_config`), it measures what Envoy charges for running any
//! Wasm filter on the request path, apart from what Keygate itself does.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
}}

struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopFilter))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct NoopFilter;

impl Context for NoopFilter {}

impl HttpContext for NoopFilter {}
