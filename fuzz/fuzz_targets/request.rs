//! The whole request path, `RequestFilter` over `FakeHost`: what both builds run per request
//! (the Wasm and the native glue only carry Envoy's bytes to it).
//!
//! Input: a run of up to 200 requests, each a key (one of the store's, or arbitrary bytes) in an
//! `Authorization` header, an `x-api-key` header or the query, arbitrary other headers (spoofed
//! `x-keygate-*` identity, `x-forwarded-for`, gRPC content types), an arbitrary path, a clock
//! step, a peer address and an upstream status, or a stream that ends without one.
//!
//! Invariants: nothing panics; a request is either forwarded or answered, never both; a
//! forwarded request carries the identity of one of the store's keys and no identity header a
//! client sent; an answer is the documented JSON error; a forwarded request's `X-RateLimit-*`
//! numbers are within its limit; and no interval of a minute admits more than a limited key's
//! per-minute limit, counting ahead or not.
#![no_main]

use std::rc::Rc;

use keygate::config::Config;
use keygate::host::{FakeHost, Host};
use keygate::metrics::Metrics;
use keygate::request::{RequestFilter, Verdict, Worker};
use keygate::sync::refresh::{Outcome, Refresh};
use keygate::sync::task::Runner;
use keygate_contract::key_hash::hash_key;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const START_MS: u64 = 1_800_000_000_000;
/// The store's keys: secret, id, per-minute limit (0: none), concurrency limit (0: none).
/// `key_rival` takes the same place as `key_busy` in a worker's table of credits, so each
/// evicts the other's credits; `key_tight` reaches its limit within a run.
const KEYS: [(&str, &str, u64, u64); 6] = [
    ("pk_live_unlimited00000000000000000000000000", "key_unlimited", 0, 0),
    ("pk_live_free0000000000000000000000000000000", "key_tight", 5, 0),
    ("pk_live_busy0000000000000000000000000000000", "key_busy", 6_400, 0),
    ("pk_live_rival000000000000000000000000000227", "key_rival", 12_800, 0),
    ("pk_live_serial00000000000000000000000000000", "key_serial", 0, 2),
    ("pk_live_both000000000000000000000000000000", "key_both", 6_400, 3),
];
const MINUTE_MS: u64 = 60_000;
const OTHER_HEADERS: [&str; 8] = [
    "x-keygate-key-id",
    "x-keygate-owner",
    "x-forwarded-for",
    "content-type",
    "x-request-id",
    "cookie",
    "x-api-key",
    "authorization",
];

fn record(secret: &str, id: &str, per_minute: u64, concurrent: u64) -> String {
    let mut limits = Vec::new();
    if per_minute > 0 {
        limits.push(format!(r#""per_minute":{per_minute}"#));
    }
    if concurrent > 0 {
        limits.push(format!(r#""concurrent":{concurrent}"#));
    }
    format!(
        r#"{{"id":"{id}","hash":"{}","prefix":"pk_live_","name":"{id}","team":"acme","environment":"live","active":true,"scopes":[],"limits":{{{}}}}}"#,
        hash_key(secret),
        limits.join(",")
    )
}

/// A worker whose store holds `KEYS`, loaded through the real refresh.
fn worker(host: &FakeHost) -> Rc<Worker> {
    let config = Config::parse(
        // The snapshot stays usable however far the clock runs (30 days at most per run).
        br#"{"control":{"cluster":"kc","token":"sync"},"key_header":"x-api-key","key_query_param":"api_key","max_staleness":"720h"}"#,
        &|_| None,
    )
    .expect("the fuzz target's configuration");
    let records: Vec<String> = KEYS.iter().map(|(s, id, m, c)| record(s, id, *m, *c)).collect();
    let body = format!(r#"{{"version":1,"epoch":"E","full":true,"keys":[{}]}}"#, records.join(","));
    let refresh = Refresh::new(1, config.control.clone(), config.rate_limits.slots);
    let mut refresher = Runner::new(refresh, 1, "kc").presenting(&config.control);
    refresher.tick(host);
    let call = host.take_calls().pop().expect("a refresh is due");
    let size = host.respond(Some(200), body.as_bytes());
    let outcome = refresher.on_response(host, call.token, size);
    assert!(matches!(outcome[..], [Outcome::Applied { keys, .. }] if keys == KEYS.len() as u64), "{outcome:?}");
    Rc::new(Worker::new(config, Metrics::define(host)))
}

fn run(u: &mut Unstructured, host: &FakeHost, worker: &Rc<Worker>) -> Result<()> {
    // Admission times of each limited key, to check every minute-long interval.
    let mut admitted: [Vec<u64>; KEYS.len()] = Default::default();
    let mut now = START_MS;
    for context in 0..u.int_in_range(1..=200)? {
        let step = match u.arbitrary::<u8>()? {
            0..=159 => 0,
            160..=239 => u.int_in_range(1..=100)?,
            _ => u.int_in_range(0..=2 * MINUTE_MS)?,
        };
        // Within the snapshot's `max_staleness` (30 days) of its load.
        now = (now + step).min(START_MS + 29 * 24 * 3_600_000);
        host.now.set(now);
        let which = u.int_in_range(0..=KEYS.len())?;
        let secret: Vec<u8> = match KEYS.get(which) {
            Some((secret, ..)) => secret.as_bytes().to_vec(),
            None => u.arbitrary()?,
        };
        let path: Vec<u8> = if u.arbitrary()? { b"/v1/models".to_vec() } else { u.arbitrary()? };
        let mut headers: Vec<(&str, Vec<u8>)> = vec![(":method", b"GET".to_vec()), (":authority", b"api".to_vec())];
        match u.int_in_range(0..=2)? {
            0 => headers.push(("authorization", [b"Bearer ".as_slice(), &secret].concat())),
            1 => headers.push(("x-api-key", secret.clone())),
            _ => {
                let mut with_query = path.clone();
                with_query.extend_from_slice(b"?api_key=");
                with_query.extend_from_slice(&secret);
                headers.push((":path", with_query));
            }
        }
        if !headers.iter().any(|(name, _)| *name == ":path") {
            headers.push((":path", path));
        }
        for _ in 0..u.int_in_range(0..=4)? {
            let name = *u.choose(&OTHER_HEADERS)?;
            headers.push((name, u.arbitrary()?));
        }
        let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        host.request_bytes(&pairs);
        if u.arbitrary()? {
            let peer: Vec<u8> = u.arbitrary()?;
            host.put_property(&["source", "address"], &peer);
        }
        let mut filter = RequestFilter::new(context, Rc::clone(worker), host);
        let verdict = filter.on_request_headers();
        let reply = host.reply();
        match verdict {
            Verdict::Stop => {
                let reply = reply.expect("a request stopped is answered");
                assert!(reply.status >= 400, "status {}", reply.status);
                if reply.grpc_status.is_none() {
                    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("a JSON error");
                    assert!(body["error"]["code"].is_string(), "{}", reply.body);
                }
            }
            Verdict::Continue => {
                assert!(reply.is_none(), "forwarded and answered");
                let id = host.request_header("x-keygate-key-id").expect("a forwarded request names its key");
                let index = KEYS.iter().position(|k| k.1 == id).expect("one of the store's keys");
                assert_eq!(index, which, "forwarded as another key");
                assert_eq!(host.request_header("x-keygate-team").as_deref(), Some("acme"));
                // An identity header the filter does not write is one a client sent: removed.
                assert_eq!(host.request_header("x-keygate-owner"), None, "a spoofed header survived");
                if KEYS[index].2 > 0 {
                    admitted[index].push(now);
                }
            }
        }
        if u.arbitrary()? {
            let status = u.int_in_range(100..=599u32)?;
            host.set_response_header(":status", &status.to_string());
            filter.on_response_headers(u.arbitrary()?);
            if let (Some(limit), Some(remaining)) =
                (host.response_header("x-ratelimit-limit"), host.response_header("x-ratelimit-remaining"))
            {
                let (limit, remaining): (u64, u64) = (limit.parse().unwrap(), remaining.parse().unwrap());
                assert!(remaining < limit, "remaining {remaining} of {limit}");
            }
            filter.on_response_data(u.arbitrary()?);
        }
        filter.on_stream_end();
    }
    for (index, times) in admitted.iter().enumerate() {
        let limit = KEYS[index].2;
        for (i, &start) in times.iter().enumerate() {
            let within = times[i..].iter().take_while(|&&t| t < start + MINUTE_MS).count() as u64;
            assert!(within <= limit, "{within} admitted within a minute of {start} (limit {limit})");
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let host = FakeHost::at(START_MS);
    let worker = worker(&host);
    let _ = run(&mut Unstructured::new(data), &host, &worker);
});
