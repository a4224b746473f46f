//! A profiling harness, not a check: runs `KEYGATE_COST_REQUESTS` requests (default 0) of one
//! key through the request flow on `FakeHost`, so that `valgrind --tool=callgrind` can count
//! the instructions of an unlimited key's request and of a rate-limited one (limits never
//! reached), or of an unlimited key of the checksummed format (`KEYGATE_COST_KEY=checksummed`):
//! run it with 0 and with N requests and divide the difference by N. Ignored by
//! default; docs/rate-limits.md gives the command and the numbers.

use std::rc::Rc;

use keygate::config::Config;
use keygate::host::{FakeHost, Host};
use keygate::metrics::Metrics;
use keygate::request::{RequestFilter, Verdict, Worker};
use keygate::sync::refresh::{Outcome, Refresh};
use keygate::sync::task::Runner;
use keygate_contract::key_hash::hash_key;

const NOW_MS: u64 = 1_800_000_000_000;
const UNLIMITED: &str = "pk_live_unlimited00000000000000000000000000";
const LIMITED: &str = "pk_live_limited0000000000000000000000000000";
/// As long as a checksummed key but not of its shape (the `-`): what the checksum itself costs
/// is the difference to `checksummed`.
const SAME_LENGTH: &str = "pk_live_samelength00000000000000000000000000000000000-";
/// Shaped as keys are issued since 0.3 (40 random characters and the 6 of the checksum): the
/// request path verifies its checksum before hashing it.
fn checksummed() -> String {
    keygate_contract::key_format::with_checksum(&format!("pk_live_{:0<40}", "checksummed"))
}

fn record(secret: &str, id: &str, fields: &str) -> String {
    format!(
        r#"{{"id":"{id}","hash":"{}","prefix":"pk_live_","name":"{id}","team":"acme","environment":"live","active":true{fields}}}"#,
        hash_key(secret)
    )
}

fn worker(host: &FakeHost) -> Rc<Worker> {
    let config = Config::parse(br#"{"control":{"cluster":"kc","token":"sync"}}"#, &|_| None)
        .expect("config");
    let keys = [
        record(UNLIMITED, "key_unlimited", ""),
        record(&checksummed(), "key_checksummed", ""),
        record(SAME_LENGTH, "key_same_length", ""),
        record(
            LIMITED,
            "key_limited",
            r#","limits":{"per_minute":1000000000,"per_hour":1000000000,"per_day":1000000000}"#,
        ),
    ];
    let body = format!(
        r#"{{"version":1,"epoch":"E","full":true,"keys":[{}]}}"#,
        keys.join(",")
    );
    let refresh = Refresh::new(1, config.control.clone(), config.rate_limits.slots);
    let mut refresher = Runner::new(refresh, 1, "kc").presenting(&config.control);
    refresher.tick(host);
    let call = host.take_calls().pop().expect("a refresh is due");
    let size = host.respond(Some(200), body.as_bytes());
    let outcome = refresher.on_response(host, call.token, size);
    assert!(matches!(outcome[..], [Outcome::Applied { keys: 4, .. }]));
    Rc::new(Worker::new(config, Metrics::define(host)))
}

#[test]
#[ignore = "profiling harness: run under callgrind with KEYGATE_COST_KEY and KEYGATE_COST_REQUESTS"]
fn request_cost() {
    let host = FakeHost::at(NOW_MS);
    let worker = worker(&host);
    let secret = match std::env::var("KEYGATE_COST_KEY").as_deref() {
        Ok("limited") => LIMITED.to_string(),
        Ok("checksummed") => checksummed(),
        Ok("same-length") => SAME_LENGTH.to_string(),
        _ => UNLIMITED.to_string(),
    };
    let requests: u64 = std::env::var("KEYGATE_COST_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let bearer = format!("Bearer {secret}");
    for i in 0..requests {
        host.now.set(NOW_MS + i);
        host.request(&[
            (":method", "GET"),
            (":path", "/v1/models"),
            (":authority", "api"),
            ("authorization", &bearer),
        ]);
        let mut filter = RequestFilter::new(7, Rc::clone(&worker), &host);
        assert_eq!(filter.on_request_headers(), Verdict::Continue);
        // The upstream answers 200: the log phase of a successful request, as most are.
        host.set_response_header(":status", "200");
        filter.on_response_headers(true);
        filter.on_stream_end();
    }
}
