use super::*;
use crate::fleet::{validate_counts, validate_post};

/// A small deterministic generator (xorshift64*), so the randomised cases are the same on every
/// run and a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    /// Values of every varint length, the edges included.
    fn value(&mut self) -> u64 {
        match self.below(6) {
            0 => self.below(128),
            1 => self.below(1 << 14),
            2 => 29_000_000 + self.below(100),
            3 => u64::MAX - self.below(3),
            4 => self.next() >> self.below(64),
            _ => self.next(),
        }
    }

    fn key(&mut self) -> KeyCounts {
        let tag: String = (0..32)
            .map(|_| char::from(HEX[self.below(16) as usize]))
            .collect();
        let mut key = KeyCounts {
            key: tag,
            ..KeyCounts::default()
        };
        for window in 0..WINDOWS {
            if self.below(2) == 0 {
                key.limits[window] = Some(self.value());
            }
            let length = self.below(MAX_BUCKETS_PER_WINDOW as u64 + 1) as usize;
            let mut bucket = self.value();
            for _ in 0..length {
                // Mostly ascending by one (the filter's rings), sometimes anything.
                bucket = if self.below(4) == 0 {
                    self.value()
                } else {
                    bucket.wrapping_add(1)
                };
                key.counts[window].push((bucket, self.value()));
            }
        }
        key
    }
}

fn post(keys: Vec<KeyCounts>) -> FleetSyncPost {
    FleetSyncPost {
        proxy_id: "envoy-1".into(),
        bucket_ms: [2_000, 120_000, 3_600_000],
        window_ms: [60_000, 3_600_000, 86_400_000],
        keys,
    }
}

fn key(tag_byte: char, limits: [Option<u64>; WINDOWS], counts: [Vec<(u64, u64)>; 3]) -> KeyCounts {
    KeyCounts {
        key: tag_byte.to_string().repeat(32),
        limits,
        counts,
    }
}

#[test]
fn a_known_post_encodes_to_these_bytes() {
    let one = key(
        'a',
        [Some(300), None, Some(1)],
        [vec![(10, 3), (11, 1), (9, 2)], vec![], vec![(1, 0)]],
    );
    let bytes = encode_post(&post(vec![one.clone()])).unwrap();
    let mut expected = b"KGFS\x01P".to_vec();
    expected.extend([7]);
    expected.extend(b"envoy-1");
    expected.extend([0xd0, 0x0f, 0xc0, 0xa9, 0x07, 0x80, 0xdd, 0xdb, 0x01]);
    expected.extend([
        0xe0, 0xd4, 0x03, 0x80, 0xdd, 0xdb, 0x01, 0x80, 0xb8, 0x99, 0x29,
    ]);
    expected.extend([1]);
    expected.extend([0xaa; 16]);
    expected.extend([0b101, 0xac, 0x02, 0x01]);
    // Window 0: three pairs, buckets 10, +1, -2 (zigzag 20, 2, 3).
    expected.extend([3, 20, 3, 2, 1, 3, 2]);
    expected.extend([0]);
    expected.extend([1, 2, 0]);
    assert_eq!(bytes, expected);
    assert_eq!(decode_post(&bytes).unwrap(), post(vec![one]));
}

#[test]
fn small_cases_round_trip_exhaustively() {
    let limits = [None, Some(0), Some(1), Some(127), Some(128), Some(u64::MAX)];
    let bucket_lists: [Vec<(u64, u64)>; 6] = [
        vec![],
        vec![(0, 0)],
        vec![(u64::MAX, u64::MAX)],
        vec![(5, 1), (6, 2), (7, 3)],
        vec![(7, 1), (3, 1), (3, 0)],
        vec![(u64::MAX, 1), (0, 2), (u64::MAX - 1, 3), (1, 4)],
    ];
    let mut cases = 0;
    for a in &limits {
        for b in &limits {
            for c in &limits {
                for (index, list) in bucket_lists.iter().enumerate() {
                    let other = &bucket_lists[(index + 3) % bucket_lists.len()];
                    let one = key(
                        '0',
                        [*a, *b, *c],
                        [list.clone(), other.clone(), list.clone()],
                    );
                    let posted = post(vec![one.clone(), key('f', [None; 3], Default::default())]);
                    let bytes = encode_post(&posted).unwrap();
                    assert_eq!(decode_post(&bytes).unwrap(), posted);
                    let reply = FleetSyncReply {
                        keys: vec![one],
                        ..FleetSyncReply::default()
                    };
                    assert_eq!(decode_reply(&encode_reply(&reply).unwrap()).unwrap(), reply);
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 6 * 6 * 6 * 6);
    for proxy_id in ["", "p", "ünïcødé-envoy", &"x".repeat(300)] {
        let mut posted = post(vec![]);
        posted.proxy_id = proxy_id.to_string();
        posted.bucket_ms = [0, u64::MAX, 128];
        let bytes = encode_post(&posted).unwrap();
        assert_eq!(decode_post(&bytes).unwrap(), posted);
    }
    let empty = FleetSyncReply::default();
    assert_eq!(encode_reply(&empty).unwrap(), b"KGFS\x01R\x00");
}

#[test]
fn random_messages_round_trip_and_validate_as_their_json_does() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed);
        let keys: Vec<KeyCounts> = (0..rng.below(20)).map(|_| rng.key()).collect();
        let mut posted = post(keys.clone());
        posted.window_ms[0] = rng.value();
        let bytes = encode_post(&posted).unwrap();
        let decoded = decode_post(&bytes).unwrap();
        assert_eq!(decoded, posted, "seed {seed}");
        let from_json: FleetSyncPost =
            serde_json::from_slice(&serde_json::to_vec(&posted).unwrap()).unwrap();
        assert_eq!(
            validate_post(&decoded),
            validate_post(&from_json),
            "seed {seed}"
        );
        let reply = FleetSyncReply {
            keys,
            ..FleetSyncReply::default()
        };
        let decoded = decode_reply(&encode_reply(&reply).unwrap()).unwrap();
        assert_eq!(decoded, reply, "seed {seed}");
        for key in &decoded.keys {
            assert!(validate_counts("key", key).is_ok(), "seed {seed}");
        }
    }
}

#[test]
fn every_truncation_and_every_extra_byte_is_an_error() {
    let mut rng = Rng(7);
    let posted = post((0..3).map(|_| rng.key()).collect());
    let bytes = encode_post(&posted).unwrap();
    for end in 0..bytes.len() {
        assert!(decode_post(&bytes[..end]).is_err(), "post cut at {end}");
    }
    let reply = FleetSyncReply {
        keys: (0..3).map(|_| rng.key()).collect(),
        ..FleetSyncReply::default()
    };
    let replied = encode_reply(&reply).unwrap();
    for end in 0..replied.len() {
        assert!(decode_reply(&replied[..end]).is_err(), "reply cut at {end}");
    }
    for extra in [&[0u8][..], b"\x01", b"KGFS"] {
        let mut longer = bytes.clone();
        longer.extend_from_slice(extra);
        assert_eq!(
            decode_post(&longer).unwrap_err().to_string(),
            "bytes after the last key"
        );
    }
}

#[test]
fn damage_is_named() {
    let message = |result: Result<FleetSyncReply, DecodeError>| result.unwrap_err().to_string();
    assert_eq!(
        message(decode_reply(b"{\"keys\":[]}")),
        "not a binary fleet sync message"
    );
    assert_eq!(
        message(decode_reply(b"KGFS\x02R\x00")),
        "unsupported fleet sync encoding version"
    );
    assert_eq!(
        message(decode_reply(b"KGFS\x01P\x00")),
        "kind: not a fleet sync reply"
    );
    assert_eq!(
        decode_post(b"KGFS\x01R\x00").unwrap_err().to_string(),
        "kind: not a fleet sync post"
    );
    assert_eq!(
        message(decode_reply(b"KGFS\x01X\x00")),
        "kind: truncated or malformed"
    );
    // A varint with a padding byte, and one past 64 bits.
    assert!(decode_reply(b"KGFS\x01R\x80\x00").is_err());
    let mut huge = b"KGFS\x01R".to_vec();
    huge.extend([0xff; 9]);
    huge.push(0x02);
    assert!(decode_reply(&huge).is_err());
    // A key with a limit bit no window has.
    let mut bits = b"KGFS\x01R\x01".to_vec();
    bits.extend([0u8; 16]);
    bits.extend([0b1000, 0, 0, 0]);
    assert_eq!(
        message(decode_reply(&bits)),
        "keys[0].limits: unknown bits set"
    );
    let not_utf8 = b"KGFS\x01P\x01\xff\x01\x01\x01\x01\x01\x01\x00";
    assert_eq!(
        decode_post(not_utf8).unwrap_err().to_string(),
        "proxy_id: not UTF-8"
    );
}

#[test]
fn counts_are_bounded_by_the_contract_and_by_the_bytes_before_any_allocation() {
    // A count of keys far beyond the body: refused, nothing reserved for it.
    let mut claims_many = b"KGFS\x01R".to_vec();
    claims_many.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert_eq!(
        decode_reply(&claims_many).unwrap_err().to_string(),
        format!("keys: more than {MAX_KEYS_PER_SYNC}")
    );
    let mut claims_some = b"KGFS\x01R".to_vec();
    claims_some.push(100);
    claims_some.extend([0u8; 16 + 4]);
    assert_eq!(
        decode_reply(&claims_some).unwrap_err().to_string(),
        "keys: count larger than the body"
    );
    // More keys than a sync may carry, every byte of them present.
    let too_many = FleetSyncReply {
        keys: vec![key('1', [None; 3], Default::default()); MAX_KEYS_PER_SYNC + 1],
        ..FleetSyncReply::default()
    };
    let bytes = encode_reply(&too_many).unwrap();
    assert!(decode_reply(&bytes).is_err());
    let mut at_most = too_many;
    at_most.keys.pop();
    assert!(decode_reply(&encode_reply(&at_most).unwrap()).is_ok());
    // More buckets in a window than the contract allows.
    let wide = key(
        '2',
        [None; 3],
        [vec![], vec![(1, 1); MAX_BUCKETS_PER_WINDOW + 1], vec![]],
    );
    let bytes = encode_reply(&FleetSyncReply {
        keys: vec![wide],
        ..FleetSyncReply::default()
    })
    .unwrap();
    assert_eq!(
        decode_reply(&bytes).unwrap_err().to_string(),
        format!("keys[0].counts[1]: more than {MAX_BUCKETS_PER_WINDOW}")
    );
}

#[test]
fn a_tag_that_is_not_a_key_tag_cannot_be_encoded() {
    let mut bad = key('a', [None; 3], Default::default());
    bad.key = "A".repeat(32);
    let error = encode_post(&post(vec![key('b', [None; 3], Default::default()), bad])).unwrap_err();
    assert_eq!(error.field, "keys[1].key");
}

/// The shape `bench/fleet_sync.py` posts: 1,000 keys with 30 two-second minute buckets, the
/// hour's and the day's bucket.
fn thousand_keys(now_ms: u64) -> FleetSyncPost {
    let minute = now_ms / 2_000;
    let (hour, day) = (now_ms / 120_000, now_ms / 3_600_000);
    let keys = (0..1_000u64)
        .map(|index| KeyCounts {
            key: format!("{:032x}", index.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            limits: [Some(if index < 100 { 3_000 } else { 100_000 }), None, None],
            counts: [
                (minute - 29..=minute).map(|b| (b, 1 + b % 3)).collect(),
                vec![(hour, 64)],
                vec![(day, 64)],
            ],
        })
        .collect();
    post(keys)
}

#[test]
fn a_thousand_key_post_is_a_fraction_of_its_json() {
    let posted = thousand_keys(1_765_000_000_000);
    let json = serde_json::to_vec(&posted).unwrap().len();
    let binary = encode_post(&posted).unwrap().len();
    println!("1,000-key sync post: JSON {json} bytes, binary {binary} bytes");
    assert!(binary * 5 < json, "JSON {json}, binary {binary}");
}

#[test]
fn clients_ask_for_this_encoding_first() {
    assert!(ACCEPT.starts_with(&format!("{MEDIA_TYPE}, ")));
}
