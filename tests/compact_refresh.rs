//! The snapshot refresh (`keygate::sync::refresh`) fed compact pages (`contract::compact`)
//! through `FakeHost`: what it asks for, a full snapshot over two pages, a delta with a
//! deletion, a record that does not decode quarantined alone, a structurally damaged page
//! rejected, and a JSON page still read after compact ones (a backend that answers JSON).

use keygate::config::ControlConfig;
use keygate::host::{DispatchedCall, FakeHost};
use keygate::sync::refresh::{Outcome, Refresh, RefreshError, ACCEPT};
use keygate::sync::task::Runner;
use keygate_contract::compact::{self, PageHeader};
use keygate_contract::key_hash::{digest_key, hex_digest, Digest};
use keygate_contract::snapshot::{KeyRecord, Limits};

fn control() -> ControlConfig {
    let json = r#"{"control":{"cluster":"kc","token":"sync"}}"#;
    keygate::config::Config::parse(json.as_bytes(), &|_| None)
        .unwrap()
        .control
}

fn record(secret: &str) -> KeyRecord {
    KeyRecord {
        id: format!("key_{secret}"),
        hash: hex_digest(&digest_key(secret)),
        prefix: "pk_live_".into(),
        last4: "abcd".into(),
        name: secret.into(),
        team: "acme".into(),
        environment: "live".into(),
        scopes: vec![],
        allowed_ips: vec!["10.0.0.0/8".into()],
        expires_at: None,
        active: true,
        plan: "free".into(),
        limits: Limits::default(),
        quota_exceeded_until: None,
    }
}

fn page(header: PageHeader, records: &[Vec<u8>], deleted: &[Digest]) -> Vec<u8> {
    compact::encode_page(&header, records.len() as u32, &records.concat(), deleted).unwrap()
}

fn encoded(secret: &str) -> Vec<u8> {
    compact::encode_record(&record(secret)).unwrap()
}

fn header(version: u64, full: bool, since: u64, next_cursor: Option<&str>) -> PageHeader {
    PageHeader {
        version,
        since,
        full,
        epoch: "E".into(),
        next_cursor: next_cursor.map(str::to_string),
        total_keys: if full { 3 } else { 0 },
    }
}

type Refresher = Runner<Refresh>;

/// Claims and answers with 200 and `body`; returns the call and the outcome.
fn fetch(refresher: &mut Refresher, host: &FakeHost, body: &[u8]) -> (DispatchedCall, Outcome) {
    refresher.tick(host);
    let call = host.take_calls().pop().expect("a refresh should be due");
    let outcome = answer(refresher, host, &call, body);
    (call, outcome)
}

/// Answers `call` with 200 and `body`.
fn answer(
    refresher: &mut Refresher,
    host: &FakeHost,
    call: &DispatchedCall,
    body: &[u8],
) -> Outcome {
    let size = host.respond(Some(200), body);
    refresher.on_response(host, call.token, size).remove(0)
}

#[test]
fn compact_pages_load_like_json_ones() {
    let host = FakeHost::at(1_000_000);
    let mut refresher = Runner::new(Refresh::new(1, control(), 64), 1, "kc").presenting(&control());
    let first = page(
        header(5, true, 0, Some("h5.x")),
        &[encoded("a"), encoded("b")],
        &[],
    );
    let (request, outcome) = fetch(&mut refresher, &host, &first);
    assert!(request
        .headers
        .contains(&("accept".to_string(), ACCEPT.to_string())));
    assert!(ACCEPT.starts_with(compact::MEDIA_TYPE));
    assert!(matches!(outcome, Outcome::NextPage { .. }), "{outcome:?}");
    let next = host.take_calls().pop().expect("the next page's call");
    assert!(next.path().ends_with("&cursor=h5.x"), "{}", next.path());
    let last = page(header(6, true, 0, None), &[encoded("c")], &[]);
    assert_eq!(
        answer(&mut refresher, &host, &next, &last),
        Outcome::Applied {
            version: 5,
            keys: 3,
            full: true
        }
    );

    // A delta: one key changed, one deleted, one whose record ends early (quarantined, and
    // its hash deleted too).
    host.now.set(1_000_000 + 11_001);
    let cut = compact::encode_unreadable(&digest_key("b"), "key_b");
    let delta = page(
        header(7, false, 5, None),
        &[encoded("d"), cut],
        &[digest_key("a")],
    );
    let (request, outcome) = fetch(&mut refresher, &host, &delta);
    assert!(
        request.path().contains("since=5&epoch=E"),
        "{}",
        request.path()
    );
    assert_eq!(
        outcome,
        Outcome::Applied {
            version: 7,
            keys: 2,
            full: false
        }
    );
    let quarantined = refresher.job_mut().take_quarantined();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].id, "key_b");
    assert_eq!(
        quarantined[0].error.to_string(),
        "keys[1].prefix: truncated"
    );

    // Structural damage: the last good snapshot stays.
    host.now.set(1_000_000 + 60_000);
    let mut damaged = page(header(8, false, 7, None), &[encoded("e")], &[]);
    damaged.pop();
    let (_, outcome) = fetch(&mut refresher, &host, &damaged);
    assert!(
        matches!(&outcome, Outcome::Failed(error @ RefreshError::Unreadable(reason))
            if error.rejected() && reason.contains("frame runs past")),
        "{outcome:?}"
    );

    // The same backend answering JSON now: read by its first bytes.
    host.now.set(1_000_000 + 120_000);
    let json = format!(
        r#"{{"version":8,"epoch":"E","full":false,"since":7,"keys":[{}]}}"#,
        serde_json::to_string(&record("e")).unwrap()
    );
    let (_, outcome) = fetch(&mut refresher, &host, json.as_bytes());
    assert_eq!(
        outcome,
        Outcome::Applied {
            version: 8,
            keys: 3,
            full: false
        }
    );
}
