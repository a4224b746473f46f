//! Reading what Redis answers: limits, totals and announcements.

use super::*;

fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

#[test]
fn limits_travel_as_text() {
    let limits = [Some(60), None, Some(1_000)];
    assert_eq!(limits_text(&limits), "60,,1000");
    assert_eq!(parse_limits("60,,1000"), Some(limits));
    assert_eq!(parse_limits("60,1000"), None);
    assert_eq!(parse_limits("x,,"), None);
}

#[test]
fn totals_skip_what_does_not_parse() {
    let value = Value::Array(vec![
        bulk("lim"),
        bulk("10,,"),
        bulk("0:2000:500"),
        bulk("7"),
        bulk("9:2000:500"),
        bulk("1"),
        bulk("garbage"),
        bulk("3"),
        bulk("0:2000:501"),
        bulk("NaN"),
    ]);
    let totals = key_totals(&value).unwrap();
    assert_eq!(totals.limits, Some([Some(10), None, None]));
    assert_eq!(totals.buckets, vec![((0, 2_000, 500), 7)]);
    assert_eq!(key_totals(&Value::Array(vec![])), None, "an empty hash");
}

#[test]
fn announcements_are_read_from_an_xread_answer() {
    let tag = "ab".repeat(16);
    let value = Value::Array(vec![Value::Array(vec![
        bulk("keygate:fleet:published"),
        Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("k"), bulk(&tag), bulk("l"), bulk("5,,")]),
            ]),
            Value::Array(vec![
                bulk("2-0"),
                Value::Array(vec![bulk("k"), bulk("not a tag"), bulk("l"), bulk(",,")]),
            ]),
        ]),
    ])]);
    let (announced, last) = announcements(&value);
    assert_eq!(
        announced,
        vec![PublishedKey {
            tag,
            limits: [Some(5), None, None]
        }]
    );
    assert_eq!(last.as_deref(), Some("2-0"));
    assert_eq!(announcements(&Value::Nil), (vec![], None));
}
