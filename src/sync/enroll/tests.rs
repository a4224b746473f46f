//! Enrolling through the runner and `FakeHost`: the enrollment call, the other jobs waiting for
//! the credential and presenting it, and a refused credential enrolled again under the name.

use super::*;
use crate::config::Config;
use crate::host::FakeHost;
use crate::sync::refresh::Refresh;
use crate::sync::task::Runner;

const NOW: u64 = 1_000_000;
const NODE_ID: &str = "sidecar~10.0.0.1~web-1.default~default.svc.cluster.local";

fn control(extra: &str) -> ControlConfig {
    let json = format!(
        r#"{{"control":{{"cluster":"kc","enrollment_token":"kge_fleet","timeout":"2s"{extra}}}}}"#
    );
    Config::parse(json.as_bytes(), &|_| None).unwrap().control
}

fn credential(fill: char) -> String {
    format!("kgp_{}", fill.to_string().repeat(40))
}

fn answer(credential: &str) -> Vec<u8> {
    format!(r#"{{"proxy_id":"prx_1","credential":"{credential}","later":true}}"#).into_bytes()
}

#[test]
fn jobs_wait_for_the_credential_present_it_and_enroll_again_when_it_is_refused() {
    let control = control(r#","proxy_labels":{"zone":"a"}"#);
    let host = FakeHost::at(NOW);
    host.put_property(&["xds", "node", "id"], NODE_ID.as_bytes());
    let mut enroll = Runner::new(Enroll::new(7, &control).unwrap(), 7, "kc");
    let mut refresh =
        Runner::new(Refresh::new(7, control.clone(), 64), 7, "kc").presenting(&control);

    refresh.tick(&host);
    assert!(host.take_calls().is_empty(), "nothing to present yet");
    enroll.tick(&host);
    let calls = host.take_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path(), ENROLL_PATH);
    assert_eq!(calls[0].header("authorization"), Some("Bearer kge_fleet"));
    let request: EnrollRequest = serde_json::from_slice(calls[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(request.name, NODE_ID);
    assert_eq!(request.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(request.version, env!("CARGO_PKG_VERSION"));
    let first = credential('a');
    let size = host.respond(Some(200), &answer(&first));
    let outcomes = enroll.on_response(&host, calls[0].token, size);
    assert!(
        matches!(&outcomes[..], [EnrollOutcome::Enrolled { proxy_id, .. }] if proxy_id == "prx_1")
    );

    refresh.tick(&host);
    let snapshot = host.take_calls();
    assert_eq!(snapshot.len(), 1);
    let bearer = format!("Bearer {first}");
    assert_eq!(snapshot[0].header("authorization"), Some(bearer.as_str()));
    host.respond(Some(401), b"");
    refresh.on_response(&host, snapshot[0].token, 0);
    assert_eq!(
        identity::current(&host),
        None,
        "a refused credential is forgotten"
    );

    host.now.set(NOW + 2 * CHECK_EVERY_MS);
    enroll.tick(&host);
    let again = host.take_calls();
    assert_eq!(again.len(), 1, "enrolled again");
    let request: EnrollRequest = serde_json::from_slice(again[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        request.name, NODE_ID,
        "under the same name: the same identity"
    );
}

#[test]
fn refusals_and_bad_answers_keep_no_credential() {
    let control = control(r#","proxy_name":"edge-1""#);
    for (status, body) in [
        (Some(403), b"{}".to_vec()),
        (
            Some(200),
            br#"{"proxy_id":"prx_1","credential":"kgt_notaproxycredential0000000"}"#.to_vec(),
        ),
        (Some(200), b"not json".to_vec()),
        (None, Vec::new()),
    ] {
        let host = FakeHost::at(NOW);
        let mut enroll = Runner::new(Enroll::new(7, &control).unwrap(), 7, "kc");
        enroll.tick(&host);
        let calls = host.take_calls();
        let request: EnrollRequest =
            serde_json::from_slice(calls[0].body.as_deref().unwrap()).unwrap();
        assert_eq!(request.name, "edge-1");
        let size = host.respond(status, &body);
        let outcomes = enroll.on_response(&host, calls[0].token, size);
        assert!(
            matches!(&outcomes[..], [EnrollOutcome::Failed(_)]),
            "{status:?}"
        );
        assert_eq!(identity::current(&host), None);
    }
}

#[test]
fn without_a_node_id_one_name_is_made_up_for_every_worker_of_the_envoy() {
    let control = control("");
    let host = FakeHost::at(NOW);
    let mut first = Runner::new(Enroll::new(0xabc, &control).unwrap(), 0xabc, "kc");
    first.tick(&host);
    let calls = host.take_calls();
    let request: EnrollRequest = serde_json::from_slice(calls[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(request.name, "envoy-0000000000000abc");
    host.respond(Some(403), b"{}");
    first.on_response(&host, calls[0].token, 2);
    // Another worker (another VM id) enrolls after the backoff: under the same name, so a
    // revoked identity stays revoked.
    host.now.set(NOW + 600_000);
    let mut second = Runner::new(Enroll::new(0xdef, &control).unwrap(), 0xdef, "kc");
    second.tick(&host);
    let calls = host.take_calls();
    let request: EnrollRequest = serde_json::from_slice(calls[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(request.name, "envoy-0000000000000abc");
}
