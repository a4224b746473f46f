//! Every wrapper against every status through the stand-in imports, and the header-map decoder
//! against damaged maps.

use super::imports::{answer, take_calls, Reply};
use super::*;
use crate::headers::sample::{sample_pairs, SAMPLE_MAP};

/// Every code the ABI defines, one past them, and two far-off ones.
const STATUSES: [u32; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 99, u32::MAX];

fn reply(status: u32, data: Option<&[u8]>, number: u64) {
    answer(Reply {
        status,
        data: data.map(<[u8]>::to_vec),
        number,
    });
}

#[test]
fn check_maps_every_status() {
    let cases = [
        (0, None),
        (1, Some(HostError::NotFound)),
        (2, Some(HostError::BadArgument)),
        (3, Some(HostError::SerializationFailure)),
        (4, Some(HostError::ParseFailure)),
        (5, Some(HostError::BadExpression)),
        (6, Some(HostError::InvalidMemoryAccess)),
        (7, Some(HostError::Empty)),
        (8, Some(HostError::CasMismatch)),
        (9, Some(HostError::ResultMismatch)),
        (10, Some(HostError::InternalFailure)),
        (11, Some(HostError::BrokenConnection)),
        (12, Some(HostError::Unimplemented)),
        (13, Some(HostError::Unknown(13))),
        (u32::MAX, Some(HostError::Unknown(u32::MAX))),
    ];
    for (status, expected) in cases {
        assert_eq!(HostError::check(status).err(), expected, "status {status}");
    }
}

#[test]
fn no_wrapper_panics_on_any_status() {
    for status in STATUSES {
        for data in [
            None,
            Some(&b""[..]),
            Some(&b"garbage"[..]),
            Some(SAMPLE_MAP),
        ] {
            reply(status, data, 7);
            let _ = current_time_nanos();
            let _ = set_tick_period(Duration::from_secs(u64::MAX));
            let _ = log(LogLevel::Info, "message");
            let _ = get_buffer(BufferType::HttpCallResponseBody, 0, 10);
            let _ = get_header_map(MapType::HttpRequestHeaders);
            let _ = replace_header(MapType::HttpRequestHeaders, "name", "value");
            let _ = remove_header(MapType::HttpRequestHeaders, "name");
            let _ = get_property(&["source", "address"]);
            let _ = set_property(&["keygate_key_id"], b"key");
            let _ = get_shared_data("key");
            let _ = set_shared_data("key", b"value", Some(3));
            let _ = register_shared_queue("queue");
            let _ = enqueue_shared_queue(1, b"item");
            let _ = dequeue_shared_queue(1);
            let _ = send_http_response(401, &[("www-authenticate", "x")], b"{}", None);
            let _ = define_metric(MetricType::Counter, "name");
            let _ = increment_metric(1, 1);
            let _ = record_metric(1, 1);
        }
    }
    take_calls();
}

#[test]
fn statuses_become_errors_and_absence_becomes_none() {
    for status in STATUSES {
        reply(status, Some(b"value"), 9);
        let expected = HostError::check(status);
        assert_eq!(
            replace_header(MapType::HttpResponseHeaders, "n", "v"),
            expected
        );
        assert_eq!(remove_header(MapType::HttpRequestHeaders, "n"), expected);
        assert_eq!(set_property(&["p"], b"v"), expected);
        assert_eq!(set_shared_data("k", b"v", None), expected);
        assert_eq!(send_http_response(403, &[], b"", None), expected);
        assert_eq!(increment_metric(1, 1), expected);
        assert_eq!(record_metric(1, 1), expected);
        assert_eq!(enqueue_shared_queue(1, b"v"), expected);
        assert_eq!(current_time_nanos(), expected.map(|()| 9));
        assert_eq!(define_metric(MetricType::Gauge, "g"), expected.map(|()| 9));
        assert_eq!(register_shared_queue("q"), expected.map(|()| 9));
        let value = Some(b"value".to_vec());
        let (buffer_value, queue_value) = match expected {
            Ok(()) => (Ok(value.clone()), Ok(value.clone())),
            Err(HostError::NotFound) => (Ok(None), Err(HostError::NotFound)),
            Err(HostError::Empty) => (Err(HostError::Empty), Ok(None)),
            Err(error) => (Err(error), Err(error)),
        };
        assert_eq!(
            get_buffer(BufferType::PluginConfiguration, 0, 5),
            buffer_value
        );
        assert_eq!(get_property(&["p"]), buffer_value);
        assert_eq!(dequeue_shared_queue(1), queue_value);
        assert_eq!(
            get_shared_data("k"),
            match expected {
                Ok(()) => Ok((value, Some(9))),
                Err(HostError::NotFound) => Ok((None, None)),
                Err(error) => Err(error),
            }
        );
    }
    take_calls();
}

#[test]
fn header_maps_are_decoded_and_bad_ones_reported() {
    reply(0, Some(SAMPLE_MAP), 0);
    assert_eq!(
        get_header_map(MapType::HttpRequestHeaders),
        Ok(sample_pairs())
    );
    reply(0, None, 0);
    assert_eq!(
        get_header_map(MapType::HttpCallResponseHeaders),
        Ok(Vec::new())
    );
    reply(0, Some(&SAMPLE_MAP[..20]), 0);
    assert_eq!(
        get_header_map(MapType::HttpRequestHeaders),
        Err(HostError::Malformed(MapDecodeError::Truncated))
    );
    reply(1, Some(SAMPLE_MAP), 0);
    assert_eq!(
        get_header_map(MapType::HttpRequestHeaders),
        Err(HostError::NotFound)
    );
    take_calls();
}

#[test]
fn shared_data_without_a_cas_token_has_none() {
    reply(0, Some(b"v"), 0);
    assert_eq!(get_shared_data("k"), Ok((Some(b"v".to_vec()), None)));
    reply(0, None, 4);
    assert_eq!(get_shared_data("k"), Ok((None, Some(4))));
    take_calls();
}

#[test]
fn arguments_reach_the_host_in_abi_form() {
    take_calls();
    reply(0, None, 0);
    set_property(&["keygate_key_id"], b"key_1").unwrap();
    get_property(&["source", "address"]).unwrap();
    send_http_response(401, &[("www-authenticate", "Bearer")], b"{}", None).unwrap();
    send_http_response(429, &[], b"RATE_LIMIT_EXCEEDED", Some(8)).unwrap();
    replace_header(MapType::HttpRequestHeaders, "x-keygate-team", "core").unwrap();
    let calls = take_calls();
    let seen: Vec<(&str, Vec<Vec<u8>>)> = calls.iter().map(|c| (c.name, c.bytes.clone())).collect();
    assert_eq!(
        seen,
        vec![
            (
                "proxy_set_property",
                vec![b"keygate_key_id".to_vec(), b"key_1".to_vec()]
            ),
            ("proxy_get_property", vec![b"source\0address".to_vec()]),
            (
                "proxy_send_local_response",
                vec![
                    Vec::new(),
                    b"{}".to_vec(),
                    encode_header_map(&[("www-authenticate", "Bearer")]),
                    (-1i32).to_le_bytes().to_vec(),
                ]
            ),
            (
                "proxy_send_local_response",
                vec![
                    Vec::new(),
                    b"RATE_LIMIT_EXCEEDED".to_vec(),
                    encode_header_map(&[]),
                    8i32.to_le_bytes().to_vec(),
                ]
            ),
            (
                "proxy_replace_header_map_value",
                vec![b"x-keygate-team".to_vec(), b"core".to_vec()]
            ),
        ]
    );
}

#[test]
fn host_errors_read_well() {
    assert_eq!(
        HostError::BadArgument.to_string(),
        "host returned BadArgument"
    );
    assert_eq!(
        HostError::Unknown(42).to_string(),
        "host returned unknown status 42"
    );
    assert_eq!(
        HostError::Malformed(MapDecodeError::MissingNul).to_string(),
        "host returned a malformed header map: a string is not NUL-terminated"
    );
}
