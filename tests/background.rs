//! What the root context does with its ticks and its calls' answers (`keygate::background`), on
//! the host through `FakeHost`: the jobs it starts, each answer routed by token to its job, an
//! answer nobody awaits dropped, refusals and stalls backed off, usage from requests posted, one
//! fetch per Envoy between two workers, and the metrics and gauges all of it leaves. The same
//! runs end to end through Envoy in `tests/e2e/`; this pins the glue without a Wasm runtime.

use std::rc::Rc;
use std::time::Duration;

use keygate::background::{tick_period, Background, Queues};
use keygate::config::Config;
use keygate::host::{DispatchError, DispatchedCall, FakeHost};
use keygate::metrics::Metrics;
use keygate::request::{RequestFilter, Verdict, Worker};
use keygate::sync::lease::backoff_ms;
use keygate::sync::queue::LocalQueue;
use keygate_contract::fleet::{binary, FleetSyncPost, FleetSyncReply};
use keygate_contract::key_hash::hash_key;

const NOW_MS: u64 = 1_800_000_000_000;
const KEY: &str = "pk_live_valid000000000000000000000000000000";

fn config(extra: &str) -> Config {
    let json = format!(
        r#"{{"control":{{"cluster":"kc","authority":"control","token":"sync","refresh_interval":"10s","timeout":"2s"}}{extra}}}"#
    );
    Config::parse(json.as_bytes(), &|_| None).unwrap()
}

fn snapshot(records: &[&str]) -> Vec<u8> {
    let keys: Vec<String> = records
        .iter()
        .map(|secret| {
            format!(
                r#"{{"id":"id_{}","hash":"{}","prefix":"pk_live_","name":"n","environment":"live","active":true}}"#,
                &secret[8..14],
                hash_key(secret)
            )
        })
        .collect();
    format!(
        r#"{{"version":1,"epoch":"E","full":true,"keys":[{}]}}"#,
        keys.join(",")
    )
    .into_bytes()
}

/// The shared queues of one Envoy.
#[derive(Default)]
struct Envoy {
    usage: Rc<LocalQueue>,
    fleet: Rc<LocalQueue>,
}

impl Envoy {
    /// A configured worker VM `me` of this Envoy.
    fn worker(&self, host: &FakeHost, me: u64, config: Config) -> Background {
        let queues = Queues {
            usage: config
                .usage
                .enabled
                .then(|| Box::new(Rc::clone(&self.usage)) as _),
            fleet: config
                .rate_limits
                .fleet
                .then(|| Box::new(Rc::clone(&self.fleet)) as _),
        };
        let worker = Rc::new(Worker::new(config, Metrics::define(host)));
        Background::new(3, me, worker, queues)
    }
}

/// The one call to `path` (no query) dispatched since calls were last taken.
fn only_call(host: &FakeHost, path: &str) -> DispatchedCall {
    let mut calls: Vec<DispatchedCall> = host
        .take_calls()
        .into_iter()
        .filter(|call| call.path().split('?').next() == Some(path))
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    calls.remove(0)
}

fn deliver(
    background: &mut Background,
    host: &FakeHost,
    call: &DispatchedCall,
    status: u32,
    body: &[u8],
) {
    let size = host.respond(Some(status), body);
    background.on_http_call_response(host, call.token, size);
}

#[test]
fn the_tick_follows_the_shortest_interval_within_bounds() {
    let cases = [
        ("", Duration::from_millis(500)),
        (r#","rate_limits":{"fleet":false}"#, Duration::from_secs(1)),
        (
            r#","rate_limits":{"fleet":false},"usage":{"report_interval":"200ms"}"#,
            Duration::from_millis(200),
        ),
        (
            r#","rate_limits":{"sync_interval":"200ms"}"#,
            Duration::from_millis(100),
        ),
    ];
    for (extra, tick) in cases {
        assert_eq!(tick_period(&config(extra)), tick, "{extra}");
    }
    let fast = r#"{"control":{"cluster":"kc","token":"t","refresh_interval":"200ms"},"rate_limits":{"fleet":false}}"#;
    let fast = Config::parse(fast.as_bytes(), &|_| None).unwrap();
    assert_eq!(tick_period(&fast), Duration::from_millis(100));
}

#[test]
fn each_answer_reaches_the_job_that_made_the_call() {
    let host = FakeHost::at(NOW_MS);
    let envoy = Envoy::default();
    let mut background = envoy.worker(&host, 1, config(""));
    background.on_tick(&host);
    // The snapshot refresh and the fleet sync call out; usage has nothing to post yet.
    let calls = host.take_calls();
    let paths: Vec<&str> = calls.iter().map(DispatchedCall::path).collect();
    assert_eq!(paths, ["/v1/snapshot?limit=10000", "/v1/ratelimits/sync"]);
    assert!(calls.iter().all(|call| call.cluster == "kc"));
    assert_eq!(calls[0].header(":authority"), Some("control"));
    assert_eq!(calls[0].timeout, Duration::from_secs(2));
    // Answered in the other order: each by its token.
    deliver(&mut background, &host, &calls[1], 200, br#"{"keys":[]}"#);
    assert_eq!(host.metric("keygate_ratelimit_sync_ok"), 1);
    assert_eq!(host.metric("keygate_snapshot_refresh_ok"), 0);
    deliver(&mut background, &host, &calls[0], 200, &snapshot(&[KEY]));
    assert_eq!(host.metric("keygate_snapshot_refresh_ok"), 1);
    assert_eq!(
        host.metric("keygate_keys_loaded"),
        1,
        "gauges follow at once"
    );
    // Nothing awaits these any more: dropped, nothing counted.
    deliver(&mut background, &host, &calls[0], 200, &snapshot(&[]));
    deliver(&mut background, &host, &calls[1], 503, b"");
    assert_eq!(host.metric("keygate_snapshot_refresh_ok"), 1);
    assert_eq!(host.metric("keygate_keys_loaded"), 1);
    assert_eq!(host.metric("keygate_ratelimit_sync_failed"), 0);
    assert!(host.take_calls().is_empty());
}

#[test]
fn requests_are_counted_and_their_usage_posted_by_the_tick() {
    let host = FakeHost::at(NOW_MS);
    let envoy = Envoy::default();
    let mut background = envoy.worker(&host, 1, config(r#","rate_limits":{"fleet":false}"#));
    background.on_tick(&host);
    let call = only_call(&host, "/v1/snapshot");
    deliver(&mut background, &host, &call, 200, &snapshot(&[KEY]));
    host.request(&[
        (":method", "GET"),
        (":path", "/v1/models"),
        (":authority", "api"),
        ("authorization", &format!("Bearer {KEY}")),
    ]);
    let mut filter = RequestFilter::new(9, Rc::clone(background.worker()), &host);
    assert_eq!(filter.on_request_headers(), Verdict::Continue);
    filter.on_stream_end();
    assert_eq!(host.metric("keygate_requests_allowed"), 0, "until the tick");
    // The report interval (5 s) passed since the usage lease was last released.
    host.now.set(NOW_MS + 5_000);
    background.on_tick(&host);
    assert_eq!(host.metric("keygate_requests_allowed"), 1);
    let post = only_call(&host, "/v1/usage");
    let body: serde_json::Value = serde_json::from_slice(post.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["reports"][0]["key_id"], "id_valid0");
    assert_eq!(body["reports"][0]["allowed"], 1);
    assert_eq!(post.header("content-type"), Some("application/json"));
    deliver(&mut background, &host, &post, 200, b"");
    assert_eq!(host.metric("keygate_usage_reports_posted"), 1);
}

#[test]
fn a_refused_call_and_a_stalled_one_fail_and_back_off() {
    let host = FakeHost::at(NOW_MS);
    let envoy = Envoy::default();
    let mut background = envoy.worker(&host, 1, config(r#","rate_limits":{"fleet":false}"#));
    // The cluster is not in Envoy's configuration.
    host.refuse_dispatch.set(Some(DispatchError::BadArgument));
    background.on_tick(&host);
    assert_eq!(host.metric("keygate_snapshot_refresh_failed"), 1);
    host.refuse_dispatch.set(None);
    background.on_tick(&host);
    assert!(host.take_calls().is_empty(), "backing off");
    host.now.set(NOW_MS + backoff_ms(0));
    background.on_tick(&host);
    let call = only_call(&host, "/v1/snapshot");
    // Never answered: abandoned at the call's deadline (timeout + 1 s); a late answer is
    // dropped and the last good snapshot (none yet) stays.
    host.now.set(NOW_MS + backoff_ms(0) + 3_000);
    background.on_tick(&host);
    assert_eq!(host.metric("keygate_snapshot_refresh_failed"), 2);
    deliver(&mut background, &host, &call, 200, &snapshot(&[KEY]));
    assert_eq!(host.metric("keygate_snapshot_refresh_ok"), 0);
    assert_eq!(host.metric("keygate_keys_loaded"), 0);
}

#[test]
fn a_rejected_page_and_a_quarantined_record_are_counted() {
    let host = FakeHost::at(NOW_MS);
    let envoy = Envoy::default();
    let mut background = envoy.worker(&host, 1, config(r#","rate_limits":{"fleet":false}"#));
    background.on_tick(&host);
    let call = only_call(&host, "/v1/snapshot");
    deliver(&mut background, &host, &call, 200, b"<html>");
    assert_eq!(host.metric("keygate_snapshot_refresh_failed"), 1);
    assert_eq!(host.metric("keygate_snapshot_rejected"), 1);
    host.now.set(NOW_MS + backoff_ms(0));
    background.on_tick(&host);
    let call = only_call(&host, "/v1/snapshot");
    let page = String::from_utf8(snapshot(&[
        KEY,
        "pk_live_other00000000000000000000000000000",
    ]))
    .unwrap()
    .replacen(r#""name":"n""#, r#""name":"bad\u0000name""#, 1);
    deliver(&mut background, &host, &call, 200, page.as_bytes());
    assert_eq!(host.metric("keygate_snapshot_refresh_ok"), 1);
    assert_eq!(host.metric("keygate_snapshot_records_quarantined"), 1);
    assert_eq!(host.metric("keygate_keys_loaded"), 1);
}

#[test]
fn one_fetch_per_envoy_and_one_post_of_every_workers_usage() {
    let host = FakeHost::at(NOW_MS);
    let envoy = Envoy::default();
    let quiet = r#","rate_limits":{"fleet":false}"#;
    let mut first = envoy.worker(&host, 1, config(quiet));
    let mut second = envoy.worker(&host, 2, config(quiet));
    first.on_tick(&host);
    second.on_tick(&host);
    let call = only_call(&host, "/v1/snapshot");
    deliver(&mut first, &host, &call, 200, &snapshot(&[KEY]));
    // The second worker serves from the same store without fetching.
    second.on_tick(&host);
    assert!(host.take_calls().is_empty());
    assert_eq!(host.metric("keygate_keys_loaded"), 1);
    let hour = (NOW_MS / 1000) as i64;
    first
        .worker()
        .gathered
        .tally()
        .record("id_a", hour, None, None);
    second
        .worker()
        .gathered
        .tally()
        .record("id_b", hour, None, None);
    host.now.set(NOW_MS + 5_000);
    second.on_tick(&host);
    first.on_tick(&host);
    let post = only_call(&host, "/v1/usage");
    let body: serde_json::Value = serde_json::from_slice(post.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["reports"][0]["key_id"], "id_b", "{body}");
    assert_eq!(body["reports"].as_array().unwrap().len(), 1, "{body}");
    // The holder (the second) posted before the first handed its tally over; it goes next.
    deliver(&mut second, &host, &post, 200, b"");
    host.now.set(NOW_MS + 10_000);
    first.on_tick(&host);
    second.on_tick(&host);
    let post = only_call(&host, "/v1/usage");
    let body: serde_json::Value = serde_json::from_slice(post.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["reports"][0]["key_id"], "id_a");
}

#[test]
fn the_fleet_sync_goes_binary_and_falls_back_to_json_on_a_415() {
    let host = FakeHost::at(NOW_MS);
    let envoy = Envoy::default();
    let mut background = envoy.worker(&host, 1, config(""));
    background.on_tick(&host);
    let call = only_call(&host, "/v1/ratelimits/sync");
    assert_eq!(call.header("content-type"), Some(binary::MEDIA_TYPE));
    assert_eq!(call.header("accept"), Some(binary::ACCEPT));
    let post = binary::decode_post(call.body.as_deref().unwrap()).unwrap();
    deliver(&mut background, &host, &call, 415, b"{}");
    // No failure counted: the same sync went out again in JSON at once.
    assert_eq!(host.metric("keygate_ratelimit_sync_failed"), 0);
    let again = only_call(&host, "/v1/ratelimits/sync");
    assert_eq!(again.header("content-type"), Some("application/json"));
    let json: FleetSyncPost = serde_json::from_slice(again.body.as_deref().unwrap()).unwrap();
    assert_eq!(json, post);
    deliver(&mut background, &host, &again, 200, br#"{"keys":[]}"#);
    assert_eq!(host.metric("keygate_ratelimit_sync_ok"), 1);
}

#[test]
fn a_worker_configured_for_json_syncs_in_json() {
    let host = FakeHost::at(NOW_MS);
    let envoy = Envoy::default();
    let json = r#","rate_limits":{"sync_encoding":"json"}"#;
    let mut background = envoy.worker(&host, 1, config(json));
    background.on_tick(&host);
    let call = only_call(&host, "/v1/ratelimits/sync");
    assert_eq!(call.header("content-type"), Some("application/json"));
    let reply = binary::encode_reply(&FleetSyncReply::default()).unwrap();
    // A control service may still answer binary: read by its first bytes.
    deliver(&mut background, &host, &call, 200, &reply);
    assert_eq!(host.metric("keygate_ratelimit_sync_ok"), 1);
}
