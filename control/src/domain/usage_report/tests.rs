use super::*;

fn now() -> DateTime<Utc> {
    clock::parse("2026-11-23T21:15:00Z").unwrap()
}

fn check(json: &str) -> Result<UsageBatch, FieldError> {
    validate(serde_json::from_str(json).unwrap(), now())
}

fn body(reports: &str) -> String {
    format!(r#"{{"proxy_id":"p1","batch_id":"p1-1","reports":[{reports}]}}"#)
}

#[test]
fn hour_alignment_and_horizon() {
    let cases = [
        ("2026-11-23T21:00:00Z", Ok("2026-11-23T21:00:00Z")),
        ("2026-11-23T22:00:00Z", Ok("2026-11-23T22:00:00Z")),
        ("2026-11-23T23:00:00+01:00", Ok("2026-11-23T22:00:00Z")),
        ("2020-01-01T00:00:00Z", Ok("2020-01-01T00:00:00Z")),
        (
            "2026-11-23T23:00:00Z",
            Err("is more than one hour in the future"),
        ),
        (
            "2026-11-23T21:30:00Z",
            Err("is not the start of a UTC hour"),
        ),
        (
            "2026-11-23T21:00:01Z",
            Err("is not the start of a UTC hour"),
        ),
        (
            "2026-11-23T21:00:00.5Z",
            Err("is not the start of a UTC hour"),
        ),
        (
            "2026-11-23T21:00:00+05:30",
            Err("is not the start of a UTC hour"),
        ),
        ("2026-11-23 21:00", Err("is not an RFC 3339 instant")),
    ];
    for (text, expected) in cases {
        match (hour_start(text, now()), expected) {
            (Ok(instant), Ok(want)) => assert_eq!(clock::format(instant), want, "{text}"),
            (Err(message), Err(want)) => assert!(message.starts_with(want), "{text}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn keeps_non_zero_counts_by_code() {
    let batch = check(&body(
        r#"{"key_id":"key_a","hour":"2026-11-23T21:00:00Z","allowed":8,
            "denied":{"RATE_LIMIT_EXCEEDED":2,"QUOTA_EXCEEDED":0,"SOMETHING_NEW":1}}"#,
    ))
    .unwrap();
    assert_eq!(batch.proxy_id, "p1");
    assert_eq!(
        batch.reports,
        vec![HourlyUsage {
            key_id: "key_a".into(),
            hour_start: now().timestamp() - 15 * 60,
            counts: vec![
                ("ALLOWED".into(), 8),
                ("RATE_LIMIT_EXCEEDED".into(), 2),
                ("SOMETHING_NEW".into(), 1),
            ],
            events: vec![],
            ip_registers: vec![],
        }]
    );
}

#[test]
fn detail_is_stored_as_codes_and_bad_detail_left_out() {
    let batch = check(&body(
        r#"{"key_id":"key_a","hour":"2026-11-23T21:00:00Z","allowed":3,
            "upstream":{"2xx":2,"5xx":1,"6xx":9},
            "latency_buckets":{"12":2,"40":1,"999":4},
            "routes":{"jobs:write":{"allowed":3,"denied":{"QUOTA_EXCEEDED":1,"bad":1}},
                      "a/b":{"allowed":1}},
            "events":[{"at_ms":1795468500000,"outcome":"5xx","status":503,"method":"POST",
                       "path":"/v1/jobs","client_ip":"::ffff:192.0.2.1","request_id":"r1"},
                      {"at_ms":1795468500000,"outcome":"weird"},
                      {"at_ms":1895468500000,"outcome":"none"}],
            "events_dropped":4,"ip_sketch":{"7":3,"9":0,"200":70},
            "top_ips":{"::ffff:192.0.2.1":5,"nonsense":2}}"#,
    ))
    .unwrap();
    let report = &batch.reports[0];
    let codes: Vec<&str> = report
        .counts
        .iter()
        .map(|(code, _)| code.as_str())
        .collect();
    assert_eq!(
        codes,
        [
            "ALLOWED",
            "up/2xx",
            "up/5xx",
            "ms/12",
            "ms/40",
            "route/jobs:write",
            "route/jobs:write/QUOTA_EXCEEDED",
            "ev/dropped",
            "ip/192.0.2.1"
        ]
    );
    assert_eq!(
        report.ip_registers,
        [(7, 3)],
        "0 and over 64 are no register values"
    );
    for code in &codes {
        assert!(StoredCode::decode(code).is_some(), "{code}");
    }
    assert_eq!(
        StoredCode::decode("route/jobs:write/QUOTA_EXCEEDED"),
        Some(StoredCode::Route("jobs:write", Some("QUOTA_EXCEEDED")))
    );
    assert_eq!(StoredCode::decode("ms/144"), None);
    assert_eq!(
        report.events.len(),
        1,
        "an unknown outcome and a far future time are left out"
    );
    let event = &report.events[0];
    assert_eq!(event.at_ms, 1_795_468_500_000);
    assert_eq!(event.client_ip.as_deref(), Some("192.0.2.1"));
    assert_eq!(event.proxy_id, "p1");
}

#[test]
fn errors_name_the_field() {
    let report = |rest: &str| {
        body(&format!(
            r#"{{"key_id":"k","hour":"2026-11-23T21:00:00Z","allowed":1{rest}}}"#
        ))
    };
    let cases = [
        (
            r#"{"proxy_id":"","batch_id":"b","reports":[]}"#.to_string(),
            "proxy_id: must not be empty",
        ),
        (
            format!(
                r#"{{"proxy_id":"p","batch_id":"{}","reports":[]}}"#,
                "b".repeat(129)
            ),
            "batch_id: must be at most 128",
        ),
        (
            r#"{"proxy_id":"p\nq","batch_id":"b","reports":[]}"#.to_string(),
            "proxy_id: must not contain control characters",
        ),
        (
            report(r#","denied":{"rate_limit":1}"#),
            "reports[0].denied: \"rate_limit\" is not an error code",
        ),
        (
            report(r#","denied":{"ALLOWED":1}"#),
            "reports[0].denied.ALLOWED: is not a denial code",
        ),
        (
            report(r#","denied":{"QUOTA_EXCEEDED":1000000000001}"#),
            "reports[0].denied.QUOTA_EXCEEDED: must be at most",
        ),
        (
            body(r#"{"key_id":"k","hour":"2026-11-23T21:05:00Z","allowed":1}"#),
            "reports[0].hour: \"2026-11-23T21:05:00Z\" is not the start",
        ),
    ];
    for (json, expected) in cases {
        let message = check(&json).unwrap_err().to_string();
        assert!(message.starts_with(expected), "{json} gave {message}");
    }
}

#[test]
fn caps_the_number_of_reports() {
    let one = r#"{"key_id":"k","hour":"2026-11-23T21:00:00Z","allowed":1}"#;
    let at_cap = vec![one; MAX_REPORTS].join(",");
    assert_eq!(check(&body(&at_cap)).unwrap().reports.len(), MAX_REPORTS);
    let over = vec![one; MAX_REPORTS + 1].join(",");
    assert_eq!(check(&body(&over)).unwrap_err().field, "reports");
}

#[test]
fn denial_codes() {
    for good in ["RATE_LIMIT_EXCEEDED", "X", "_", &"A".repeat(64)] {
        assert!(is_denial_code(good), "{good}");
    }
    for bad in ["", "rate", "RATE-LIMIT", "CODE1", &"A".repeat(65), "É"] {
        assert!(!is_denial_code(bad), "{bad}");
    }
}
