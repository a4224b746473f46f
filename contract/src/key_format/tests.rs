use super::*;

const BODY: &str = "pk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

#[test]
fn checksum_known_answers() {
    // zlib.crc32 in Python gives the same CRC-32 (IEEE): 2206607124 and 3055433714.
    assert_eq!(&checksum(BODY.as_bytes()), b"2PKhJU");
    assert_eq!(
        &checksum(b"pk_test_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        b"3KmHsw"
    );
    assert_eq!(&checksum(b""), b"000000");
}

#[test]
fn the_checksum_table() {
    let valid = with_checksum(BODY);
    assert_eq!(valid.len(), CHECKSUMMED_LEN);
    assert_eq!(
        classify(&valid),
        KeyShape::Checksummed {
            environment: KeyEnvironment::Live,
            checksum_ok: true
        }
    );
    assert!(!fails_checksum(&valid));

    // Any one character changed, in the random part or the checksum, fails.
    for position in LIVE_PREFIX.len()..valid.len() {
        let mut bytes = valid.clone().into_bytes();
        bytes[position] = if bytes[position] == b'z' { b'y' } else { b'z' };
        let changed = String::from_utf8(bytes).unwrap();
        assert!(fails_checksum(&changed), "position {position}: {changed}");
    }

    // The checksum covers the prefix: the same characters under the other environment fail.
    let other_environment = valid.replacen(LIVE_PREFIX, TEST_PREFIX, 1);
    assert_eq!(
        classify(&other_environment),
        KeyShape::Checksummed {
            environment: KeyEnvironment::Test,
            checksum_ok: false
        }
    );

    // A key issued before checksums (40 characters after the prefix) is not checked.
    assert_eq!(
        classify(BODY),
        KeyShape::Legacy {
            environment: KeyEnvironment::Live
        }
    );
    assert!(!fails_checksum(BODY));

    // Other prefixes, lengths and alphabets are no Keygate key at all.
    for unknown in [
        "",
        "pk_prod_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA2PKhJU",
        "pk_live_",
        &valid[..valid.len() - 1],
        &format!("{valid}A"),
        &valid.replacen('A', "-", 1),
        "sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert_eq!(classify(unknown), KeyShape::Unknown, "{unknown}");
        assert!(!fails_checksum(unknown), "{unknown}");
    }
}

#[test]
fn classify_never_panics_on_non_ascii() {
    for text in [
        "pk_live_é",
        "é",
        "pk_live_ééééééééééééééééééééééééééééééééééééééééééééé",
    ] {
        assert_eq!(classify(text), KeyShape::Unknown);
        assert!(!fails_checksum(text));
    }
}
