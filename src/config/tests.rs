//! The configuration: what parses, and every error naming its field.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(json: &str) -> Result<Config, ConfigError> {
    Config::parse(json.as_bytes(), &no_env)
}

const MINIMAL: &str = r#"{"control":{"cluster":"keygate_control","token":"t"}}"#;

#[test]
fn minimal_config_gets_safe_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.fail_mode, FailMode::Closed);
    assert_eq!(config.max_staleness, Duration::from_secs(300));
    assert_eq!(config.control.refresh_interval, Duration::from_secs(10));
    assert_eq!(config.control.path, "/v1/snapshot");
    assert_eq!(config.control.authority, "keygate_control");
    assert_eq!(config.key_query_param, None);
    assert!(!config.forward_credentials);
    assert!(!config.key_id_property);
    assert_eq!(config.xff_trusted_hops, 0);
    assert!(config.rate_limits.headers);
    assert_eq!(config.rate_limits.slots, MAX_SLOTS);
    assert_eq!(config.rate_limits.windows, Windows::default());
    assert!(config.rate_limits.fleet);
    assert_eq!(config.rate_limits.sync_interval, Duration::from_secs(1));
    assert_eq!(config.rate_limits.sync_path, "/v1/ratelimits/sync");
    assert_eq!(config.rate_limits.sync_encoding, SyncEncoding::Binary);
    assert!(config.usage.enabled);
    assert_eq!(config.usage.report_interval, Duration::from_secs(5));
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    for bad in ["", "10", "s", "1.5s", "10d", "-1s", "99999999999999999999h"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (r#"{"control":{"cluster":"c"}}"#, "control.token"),
        (
            r#"{"control":{"cluster":"c","token":"t","refresh_interval":"10"}}"#,
            "control.refresh_interval",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t","timeout":"0s"}}"#,
            "control.timeout",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t","path":"snap"}}"#,
            "control.path",
        ),
        (
            r#"{"control":{"cluster":"","token":"t"}}"#,
            "control.cluster",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t","long_poll_wait":"500ms"}}"#,
            "control.long_poll_wait",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"max_staleness":"forever"}"#,
            "max_staleness",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"fail_mode":"maybe"}"#,
            "fail_mode",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"bogus":1}"#,
            "bogus",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t","url":"ftp://h"}}"#,
            "control.url",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t","url":"http://h/v1"}}"#,
            "control.url",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t","url":"https://user:pw@h"}}"#,
            "control.url",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t","url":"http://"}}"#,
            "control.url",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"key_header":"Bad Header"}"#,
            "key_header",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"key_header":"authorization"}"#,
            "key_header",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"key_query_param":"a&b"}"#,
            "key_query_param",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"xff_trusted_hops":99}"#,
            "xff_trusted_hops",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"routes":[{"exact":"/a","prefix":"/b"}]}"#,
            "routes[0].path",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"routes":[{"exact":"/a"},{"template":"/v1/{"}]}"#,
            "routes[1].path",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"routes":[{"exact":"/a","methods":["G T"]}]}"#,
            "routes[0].methods[0]",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"routes":[{"exact":"/a","scope":""}]}"#,
            "routes[0].scope",
        ),
        (
            r#"{"control":{"cluster":"c","token_env":"MISSING"}}"#,
            "control.token_env",
        ),
        ("not json", "configuration"),
        (
            r#"{"control":{"cluster":"c","token":"t"},"rate_limits":{"slots":1}}"#,
            "rate_limits.slots",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"rate_limits":{"slots":16777217}}"#,
            "rate_limits.slots",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"rate_limits":{"minute_window":"2m"}}"#,
            "rate_limits.minute_window",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"rate_limits":{"burst":1}}"#,
            "rate_limits.burst",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"rate_limits":{"sync_interval":"100ms"}}"#,
            "rate_limits.sync_interval",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"rate_limits":{"sync_path":"v1"}}"#,
            "rate_limits.sync_path",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"rate_limits":{"sync_encoding":"cbor"}}"#,
            "rate_limits.sync_encoding",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"rate_limits":{"sync_encoding":"JSON"}}"#,
            "rate_limits.sync_encoding",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"usage":{"report_interval":"1d"}}"#,
            "usage.report_interval",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"xff_trusted_hops":"two"}"#,
            "xff_trusted_hops",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t","page_size":-1}}"#,
            "control.page_size",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"routes":[{"exact":"/a","methods":"GET"}]}"#,
            "routes[0].methods",
        ),
    ];
    for (json, field) in cases {
        let err = parse(json).expect_err(json);
        assert_eq!(err.field, field, "{json}: {err}");
    }
}

#[test]
fn trailing_characters_after_the_config_are_rejected() {
    // Found by fuzz/fuzz_targets/config.rs: the routes after the stray `}` were dropped.
    let half_edited = r#"{"control":{"cluster":"c","token":"t"},"key_header":"x-api-key"}
            ,"routes":[{"methods":["GET"],"exact":"/v1/models","scope":"list_models"}]}"#;
    let err = parse(half_edited).expect_err("trailing characters accepted");
    assert_eq!(err.field, "configuration");
    assert!(err.reason.contains("trailing characters"), "{err}");
    assert!(parse(&format!("{MINIMAL} \n\t")).is_ok());
    assert!(parse(&format!("{MINIMAL}{MINIMAL}")).is_err());
}

#[test]
fn token_can_come_from_the_vm_environment() {
    let env = |name: &str| (name == "SYNC").then(|| "s3cret".to_string());
    let config = Config::parse(br#"{"control":{"cluster":"c","token_env":"SYNC"}}"#, &env).unwrap();
    assert_eq!(config.control.auth, ControlAuth::Token("s3cret".into()));
    assert!(config.control.enrollment().is_none());
}

#[test]
fn an_enrollment_token_replaces_the_token_and_names_the_proxy() {
    let env = |name: &str| (name == "ENROLL").then(|| "kge_fleet".to_string());
    let json = br#"{"control":{"cluster":"c","enrollment_token_env":"ENROLL","proxy_name":"edge-1","proxy_labels":{"zone":"a"}}}"#;
    let config = Config::parse(json, &env).unwrap();
    let enrollment = config.control.enrollment().unwrap();
    assert_eq!(enrollment.token, "kge_fleet");
    assert_eq!(enrollment.proxy_name.as_deref(), Some("edge-1"));
    assert_eq!(enrollment.labels.get("zone").map(String::as_str), Some("a"));
    for (json, field) in [
        (
            r#"{"control":{"cluster":"c","token":"t","enrollment_token":"kge_a"}}"#,
            "control.enrollment_token",
        ),
        (
            r#"{"control":{"cluster":"c","enrollment_token":"kgt_a"}}"#,
            "control.enrollment_token",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t","proxy_name":"e"}}"#,
            "control.proxy_name",
        ),
        (
            r#"{"control":{"cluster":"c","enrollment_token":"kge_a","proxy_name":"a b"}}"#,
            "control.proxy_name",
        ),
        (
            r#"{"control":{"cluster":"c","enrollment_token":"kge_a","proxy_labels":{"z":"a b"}}}"#,
            "control.proxy_labels.z",
        ),
    ] {
        let error = Config::parse(json.as_bytes(), &|_| None).unwrap_err();
        assert_eq!(error.field, field, "{json}: {error}");
    }
}

#[test]
fn routes_compile_in_order() {
    use crate::policy::routes::Access;
    let config = parse(
        r#"{"control":{"cluster":"c","token":"t"},
                "routes":[{"methods":["post"],"exact":"/v1/jobs","scope":"submit_job"},
                          {"methods":["GET"],"template":"/v1/jobs/{id}","scope":"check_status"}],
                "default_scope":"other"}"#,
    )
    .unwrap();
    let cases = [
        ("POST", "/v1/jobs", "submit_job"),
        ("POST", "/V1/Jobs", "submit_job"),
        ("GET", "/v1/jobs/42", "check_status"),
        ("GET", "/elsewhere", "other"),
    ];
    for (method, path, scope) in cases {
        assert_eq!(
            config.routes.access(method, path),
            Access::Scopes([Some(scope), None]),
            "{method} {path}"
        );
    }
    // As sent, `/V1/Jobs;x` matches no rule (so it takes the default scope); stripped, it
    // is `/v1/jobs`: it needs both.
    assert_eq!(
        config.routes.access("POST", "/V1/Jobs;x"),
        Access::Scopes([Some("other"), Some("submit_job")])
    );
    let strict = parse(
        r#"{"control":{"cluster":"c","token":"t"},"deny_unmatched":true,"case_sensitive_paths":true,
                "routes":[{"exact":"/v1/jobs","scope":"submit_job"}]}"#,
    )
    .unwrap();
    assert_eq!(strict.routes.access("GET", "/V1/JOBS"), Access::NoRule);
    assert_eq!(
        strict.routes.access("GET", "/v1/jobs"),
        Access::Scopes([Some("submit_job"), None])
    );
}

#[test]
fn route_options_are_checked() {
    for (json, field) in [
        (
            r#"{"control":{"cluster":"c","token":"t"},"deny_unmatched":true,"default_scope":"a"}"#,
            "default_scope",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"routes":[{"exact":"/a;b"}]}"#,
            "routes[0].path",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"routes":[{"exact":"/a","scope":"a,b"}]}"#,
            "routes[0].scope",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"deny_unmatched":"yes"}"#,
            "deny_unmatched",
        ),
        (
            r#"{"control":{"cluster":"c","token":"t"},"case_sensitive_path":true}"#,
            "case_sensitive_path",
        ),
    ] {
        let error = parse(json).unwrap_err();
        assert_eq!(error.field, field, "{json}: {error:?}");
    }
}

#[test]
fn the_fleet_sync_can_keep_json() {
    let json = r#"{"control":{"cluster":"c","token":"t"},"rate_limits":{"sync_encoding":"json"}}"#;
    let config = parse(json).expect("json is a sync encoding");
    assert_eq!(config.rate_limits.sync_encoding, SyncEncoding::Json);
    let binary =
        r#"{"control":{"cluster":"c","token":"t"},"rate_limits":{"sync_encoding":"binary"}}"#;
    let config = parse(binary).expect("binary is a sync encoding");
    assert_eq!(config.rate_limits.sync_encoding, SyncEncoding::Binary);
}

#[test]
fn oauth_tokens_are_read_only_where_configured_and_strictly() {
    assert_eq!(parse(MINIMAL).unwrap().oauth, None);
    let config = parse(
        r#"{"control":{"cluster":"c","token":"t"},
            "oauth":{"payload_in_metadata":"keygate","issuer":"https://api.example"}}"#,
    )
    .unwrap();
    assert_eq!(
        config.oauth,
        Some(TokenSource {
            metadata_namespace: "envoy.filters.http.jwt_authn".into(),
            payload_key: "keygate".into(),
            issuer: "https://api.example".into(),
        })
    );
    for (oauth, field) in [
        (r#"{"payload_in_metadata":"keygate"}"#, "issuer"),
        (r#"{"issuer":"https://api.example"}"#, "payload_in_metadata"),
        (
            r#"{"payload_in_metadata":"","issuer":"i"}"#,
            "oauth.payload_in_metadata",
        ),
        (r#"{"payload_in_metadata":"k","issuer":""}"#, "oauth.issuer"),
        (
            r#"{"payload_in_metadata":"k","issuer":"i","metadata_namespace":""}"#,
            "oauth.metadata_namespace",
        ),
        (
            r#"{"payload_in_metadata":"k","issuer":"i","audience":"a"}"#,
            "audience",
        ),
    ] {
        let json = format!(r#"{{"control":{{"cluster":"c","token":"t"}},"oauth":{oauth}}}"#);
        let error = parse(&json).expect_err(&json);
        assert!(
            error.field.ends_with(field) || error.to_string().contains(field),
            "{json}: {error}"
        );
    }
}

#[test]
fn control_url_is_a_base_without_a_trailing_slash() {
    let parse = |url: &str| {
        let text = format!(r#"{{"control":{{"cluster":"c","token":"t","url":"{url}"}}}}"#);
        Config::parse(text.as_bytes(), &|_| None).map(|config| config.control.urls)
    };
    assert_eq!(
        parse("http://127.0.0.1:8081/").unwrap(),
        ["http://127.0.0.1:8081"]
    );
    assert_eq!(parse("https://[::1]:8443").unwrap(), ["https://[::1]:8443"]);
    assert!(Config::parse(MINIMAL.as_bytes(), &|_| None)
        .unwrap()
        .control
        .urls
        .is_empty());
}

#[test]
fn control_url_may_list_replicas() {
    let parse = |urls: &str| {
        let text = format!(r#"{{"control":{{"cluster":"c","token":"t","url":{urls}}}}}"#);
        Config::parse(text.as_bytes(), &|_| None).map(|config| config.control.urls)
    };
    assert_eq!(
        parse(r#"["http://a:1", "http://b:2/"]"#).unwrap(),
        ["http://a:1", "http://b:2"]
    );
    for bad in ["[]", "7"] {
        assert_eq!(parse(bad).unwrap_err().field, "control.url", "{bad}");
    }
    let bad_second = parse(r#"["http://a:1", "ftp://b"]"#).unwrap_err();
    assert_eq!(bad_second.field, "control.url[1]");
    assert!(parse("7")
        .unwrap_err()
        .reason
        .contains("a URL or a list of URLs"));
}

#[test]
fn a_control_url_names_a_host_and_a_valid_port() {
    let parse = |url: &str| {
        let text = format!(r#"{{"control":{{"cluster":"c","token":"t","url":"{url}"}}}}"#);
        Config::parse(text.as_bytes(), &|_| None).map(|config| config.control.urls)
    };
    for good in [
        "http://h",
        "http://h:1",
        "https://[::1]",
        "http://[2001:db8::1]:8081",
    ] {
        assert!(parse(good).is_ok(), "{good}");
    }
    for bad in [
        "http://:8081",
        "http://h:abc",
        "http://h:99999",
        "http://h:0",
        "http://::1:80",
        "http://[::1",
        "http://[zz]:1",
        "http://[::1]x",
    ] {
        assert_eq!(parse(bad).unwrap_err().field, "control.url", "{bad}");
    }
}
