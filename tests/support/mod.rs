//! The fixture the host tests of the request flow share (`request_flow.rs`,
//! `request_state.rs`): a configuration, a loaded key store of one key per kind, a worker and
//! requests through `RequestFilter` over `FakeHost`.

// Each test crate uses part of it.
#![allow(dead_code)]

use std::rc::Rc;

use keygate::config::Config;
use keygate::host::FakeHost;
use keygate::metrics::Metrics;
use keygate::request::{RequestFilter, Verdict, Worker};
use keygate::sync::refresh::{Outcome, Refresh};
use keygate::sync::task::Runner;
use keygate_contract::key_hash::hash_key;

pub const NOW_MS: u64 = 1_800_000_000_000;
pub const VALID: &str = "pk_live_valid000000000000000000000000000000";
pub const SCOPED: &str = "pk_live_scoped00000000000000000000000000000";
pub const INACTIVE: &str = "pk_live_inactive000000000000000000000000000";
pub const EXPIRED: &str = "pk_live_expired0000000000000000000000000000";
pub const LOCKED: &str = "pk_live_locked00000000000000000000000000000";
pub const LIMITED: &str = "pk_live_limited0000000000000000000000000000";
pub const ONE_AT_A_TIME: &str = "pk_live_oneatatime0000000000000000000000000";
pub const OVER_QUOTA: &str = "pk_live_overquota00000000000000000000000000";

pub fn config(extra: &str) -> Config {
    let json = format!(
        r#"{{"control":{{"cluster":"kc","token":"sync"}},"key_header":"x-api-key",
            "routes":[{{"methods":["POST"],"exact":"/v1/jobs","scope":"submit_job"}}],
            "rate_limits":{{"in_flight_expiry":"7s"}}{extra}}}"#
    );
    Config::parse(json.as_bytes(), &|_| None).unwrap()
}

pub fn record(secret: &str, id: &str, fields: &str) -> String {
    format!(
        r#"{{"id":"{id}","hash":"{}","prefix":"pk_live_","name":"name of {id}","team":"acme","environment":"live","active":true{fields}}}"#,
        hash_key(secret)
    )
}

/// Loads the keys into the host's store the way the refresh does.
pub fn load(host: &FakeHost, config: &Config) {
    let keys = [
        record(VALID, "key_valid", ""),
        record(SCOPED, "key_scoped", r#","scopes":["list_models"]"#),
        record(INACTIVE, "key_inactive", "").replace(r#""active":true"#, r#""active":false"#),
        record(
            EXPIRED,
            "key_expired",
            r#","expires_at":"2020-01-01T00:00:00Z""#,
        ),
        record(LOCKED, "key_locked", r#","allowed_ips":["10.0.0.0/8"]"#),
        record(LIMITED, "key_limited", r#","limits":{"per_minute":2}"#),
        record(ONE_AT_A_TIME, "key_one", r#","limits":{"concurrent":1}"#),
        record(
            OVER_QUOTA,
            "key_quota",
            r#","quota_exceeded_until":"2099-01-01T00:00:00Z""#,
        ),
    ];
    let body = format!(
        r#"{{"version":1,"epoch":"E","full":true,"keys":[{}]}}"#,
        keys.join(",")
    );
    let outcome = refresh(host, config, 1, &body);
    assert!(
        matches!(outcome, Outcome::Applied { keys: 8, .. }),
        "{outcome:?}"
    );
}

/// A refresh by VM `me`, answered with `body`: its outcome.
pub fn refresh(host: &FakeHost, config: &Config, me: u64, body: &str) -> Outcome {
    let mut refresher = Runner::new(Refresh::new(me, config.control.clone(), 64), me, "kc");
    refresher.tick(host);
    let call = host.take_calls().pop().expect("a refresh is due");
    let size = host.respond(Some(200), body.as_bytes());
    refresher.on_response(host, call.token, size).remove(0)
}

pub struct Setup {
    pub host: FakeHost,
    pub worker: Rc<Worker>,
}

pub fn setup(extra: &str, loaded: bool) -> Setup {
    let host = FakeHost::at(NOW_MS);
    let config = config(extra);
    if loaded {
        load(&host, &config);
    }
    let metrics = Metrics::define(&host);
    let worker = Rc::new(Worker::new(config, metrics));
    Setup { host, worker }
}

impl Setup {
    pub fn filter(&self) -> RequestFilter<&FakeHost> {
        RequestFilter::new(7, Rc::clone(&self.worker), &self.host)
    }

    /// Sends one request; returns the verdict and the filter (for the response and stream end).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (Verdict, RequestFilter<&FakeHost>) {
        let mut all = vec![(":method", method), (":path", path), (":authority", "api")];
        all.extend_from_slice(headers);
        self.host.request(&all);
        let mut filter = self.filter();
        let verdict = filter.on_request_headers();
        (verdict, filter)
    }

    pub fn get(&self, key: &str) -> (Verdict, RequestFilter<&FakeHost>) {
        let bearer = format!("Bearer {key}");
        self.send("GET", "/v1/models", &[("authorization", bearer.as_str())])
    }

    /// The error answer sent for the current request: (status, code, all headers).
    pub fn error(&self) -> (u32, String, Vec<(String, String)>) {
        let reply = self.host.reply().expect("a local reply");
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["status"], reply.status);
        let header = |name: &str| reply.headers.iter().any(|(n, _)| n == name);
        assert!(header("content-type"));
        (
            reply.status,
            body["error"]["code"].as_str().unwrap().to_string(),
            reply.headers,
        )
    }
}

pub fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Applies one snapshot answer (a full page or a delta) through a refresher, as the lease holder.
pub fn apply(setup: &Setup, body: &str) {
    let outcome = refresh(&setup.host, &setup.worker.config, 9, body);
    assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
}

/// Applies a delta on top of the loaded snapshot that upserts `record`.
pub fn apply_delta(setup: &Setup, record: &str) {
    let since = keygate::store::read_meta(&setup.host).version;
    apply(
        setup,
        &format!(
            r#"{{"version":{},"epoch":"E","full":false,"since":{since},"keys":[{record}]}}"#,
            since + 1
        ),
    );
}
