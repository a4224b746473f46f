//! The per-request context: gathers the request facts, asks `decision`, applies the answer.

use std::rc::Rc;

use log::debug;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::config::{Config, FailMode};
use crate::decision::{self, Denial, RequestFacts};
use crate::extract::{self, Credential, Source, Sources};
use crate::host::{Host, ProxyHost};
use crate::keys::{hash_key, StoredKey};
use crate::metrics::Metrics;
use crate::net;
use crate::store;

/// Headers the filter owns; any sent by the client are removed before anything else.
pub const IDENTITY_HEADERS: [&str; 5] = [
    "x-keygate-key-id",
    "x-keygate-key-name",
    "x-keygate-team",
    "x-keygate-environment",
    "x-keygate-scopes",
];
pub const FAIL_OPEN_HEADER: &str = "x-keygate-fail-open";
/// Filter state / property the key id is exposed under (`%FILTER_STATE(wasm.keygate_key_id:PLAIN)%`).
pub const KEY_ID_PROPERTY: &str = "keygate_key_id";

pub struct RequestFilter {
    context_id: u32,
    config: Rc<Config>,
    metrics: Rc<Metrics>,
}

fn header<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// Keeps a header value printable so it can be echoed safely (request ids).
fn printable(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 200 && !s.chars().any(char::is_control))
}

fn set_request_header(name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
}

impl RequestFilter {
    pub fn new(context_id: u32, config: Rc<Config>, metrics: Rc<Metrics>) -> RequestFilter {
        RequestFilter {
            context_id,
            config,
            metrics,
        }
    }

    fn deny(&self, denial: &Denial, request_id: Option<&str>) -> Action {
        self.metrics.denied(denial.code);
        debug!(
            "#{} denied {} {}",
            self.context_id,
            denial.code.status(),
            denial.code.as_str()
        );
        let reply = decision::render(denial, &self.config.realm, request_id);
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        let _ = hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()));
        Action::Pause
    }

    fn strip_credentials(&self, source: Option<Source>, path: &str) {
        if self.config.forward_credentials {
            return;
        }
        set_request_header("authorization", None);
        if let Some(name) = &self.config.key_header {
            set_request_header(name, None);
        }
        if let (Some(Source::Query), Some(param)) = (source, &self.config.key_query_param) {
            set_request_header(":path", Some(&extract::strip_query_param(path, param)));
        }
    }

    fn forward_identity(&self, key: &StoredKey) {
        set_request_header("x-keygate-key-id", Some(&key.id));
        set_request_header("x-keygate-key-name", Some(&key.name));
        set_request_header("x-keygate-team", Some(&key.team));
        set_request_header("x-keygate-environment", Some(&key.environment));
        set_request_header("x-keygate-scopes", Some(&key.scopes.join(",")));
        let _ = hostcalls::set_property(vec![KEY_ID_PROPERTY], Some(key.id.as_bytes()));
    }
}

impl Context for RequestFilter {}

impl HttpContext for RequestFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Values as bytes: the String variants panic on non-UTF-8 header values.
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        for (name, _) in &headers {
            if name.starts_with("x-keygate-") {
                set_request_header(name, None);
            }
        }
        let request_id = header(&headers, "x-request-id").and_then(printable);
        let path = header(&headers, ":path")
            .and_then(|p| std::str::from_utf8(p).ok())
            .unwrap_or("/");
        let method = header(&headers, ":method")
            .and_then(|m| std::str::from_utf8(m).ok())
            .unwrap_or("");
        let host = ProxyHost;
        let now_ms = host.now_ms();

        let credential = extract::extract(
            &headers,
            Sources {
                header: self.config.key_header.as_deref(),
                query_param: self.config.key_query_param.as_deref(),
            },
        );
        let source = match credential {
            Credential::Present { source, .. } => Some(source),
            _ => None,
        };

        // Read per request (16 bytes, no parsing) rather than cached per worker, so a new
        // generation retires removed keys on every worker at the same instant.
        let view = store::read_view(&host);
        if !view.usable(now_ms, self.config.max_staleness) {
            return match self.config.fail_mode {
                FailMode::Closed => self.deny(&Denial::unavailable(), request_id),
                FailMode::Open => {
                    self.metrics.fail_open();
                    self.strip_credentials(source, path);
                    set_request_header(FAIL_OPEN_HEADER, Some("true"));
                    Action::Continue
                }
            };
        }

        let peer = hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|text| net::parse_address(&text));
        let facts = RequestFacts {
            method,
            path,
            client_ip: net::client_ip(
                peer,
                header(&headers, "x-forwarded-for"),
                self.config.xff_trusted_hops,
            ),
            now: (now_ms / 1000) as i64,
        };
        let lookup = |key: &str| store::lookup(&host, &hash_key(key), view.generation);
        match decision::decide(&self.config, &credential, lookup, &facts) {
            Ok(key) => {
                self.strip_credentials(source, path);
                self.forward_identity(&key);
                self.metrics.allowed();
                debug!("#{} allowed key {}", self.context_id, key.id);
                Action::Continue
            }
            Err(denial) => self.deny(&denial, request_id),
        }
    }
}
