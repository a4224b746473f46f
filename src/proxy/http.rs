//! The proxy-wasm HTTP context: hands each request to the host-independent flow in
//! `request.rs`, with the real host.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::proxy::host::ProxyHost;
use crate::request::{RequestFilter, Verdict};

impl Context for RequestFilter<ProxyHost> {}

impl HttpContext for RequestFilter<ProxyHost> {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.on_request_headers() {
            Verdict::Continue => Action::Continue,
            Verdict::Stop => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.on_response_headers(end_of_stream);
        Action::Continue
    }

    fn on_http_response_body(&mut self, _body_size: usize, end_of_stream: bool) -> Action {
        self.on_response_data(end_of_stream);
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_response_data(true);
        Action::Continue
    }

    fn on_log(&mut self) {
        self.on_stream_end();
    }
}
