//! `Config::parse` over arbitrary bytes.
//!
//! Invariants: never panics; a configuration it accepts is one JSON value (nothing after it),
//! and re-serialising that value and parsing again gives an equal `Config`; what it accepts is
//! within the documented bounds.
#![no_main]

use keygate::config::Config;
use libfuzzer_sys::fuzz_target;

fn env(name: &str) -> Option<String> {
    match name {
        "KEYGATE_SYNC_TOKEN" => Some("dev-sync-token".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = Config::parse(data, &env);
    let config = match parsed {
        Ok(config) => config,
        Err(err) => {
            // (`{"": 1}` is an unknown field named "", so the field may be empty.)
            assert!(err.to_string().contains(&err.reason));
            return;
        }
    };
    let value: serde_json::Value = serde_json::from_slice(data)
        .unwrap_or_else(|e| panic!("accepted a configuration that is not one JSON value: {e}"));
    let again = serde_json::to_vec(&value).unwrap();
    let reparsed = Config::parse(&again, &env).unwrap_or_else(|e| panic!("re-parse failed: {e}"));
    assert_eq!(config, reparsed);
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    assert_eq!(Config::parse(&pretty, &env).as_ref(), Ok(&config));

    assert!(config.xff_trusted_hops <= 16);
    match &config.control.auth {
        keygate::config::ControlAuth::Token(token) => assert!(!token.is_empty()),
        keygate::config::ControlAuth::Enroll(_) => {}
    }
    assert!(!config.control.cluster.is_empty());
    assert!(config.control.path.starts_with('/'));
    assert!(config.usage.path.starts_with('/'));
    assert!((100..=50_000).contains(&config.control.page_size));
    assert!((16..=keygate::config::MAX_SLOTS).contains(&config.rate_limits.slots));
    for length in config.rate_limits.windows.lengths_ms {
        assert!(length >= 1_000);
    }
    if let Some(header) = &config.key_header {
        assert_ne!(header, "authorization");
    }
});
