//! Fleet-wide rate limits (`POST /v1/ratelimits/sync`): what one Envoy admitted per limited key
//! and window bucket, and what the control service answers the rest of the fleet admitted.
//!
//! Counts are absolute per (Envoy, key, window, bucket): "this Envoy has admitted 17 requests of
//! this key in minute-bucket 29,012,345 so far", never "17 more". A retried or repeated sync
//! therefore sets the same value again instead of adding it twice: idempotent without ids.
//! Buckets are absolute (`now_ms / bucket_ms`), so every Envoy of a fleet with the same window
//! settings numbers them alike.
//!
//! Keys are named by the first 16 bytes of their SHA-256 (`key_tag`), which is all both sides
//! need: the control service adds counts up by tag and never learns more of the key.
//!
//! Read tolerantly, like every wire message: unknown fields are ignored.

use serde::{Deserialize, Serialize};

use crate::fields::{self, FieldError};
use crate::key_hash::Digest;
use crate::snapshot::Limits;

pub mod binary;

/// Keys in one sync; an Envoy with more active limited keys sends the rest next time.
pub const MAX_KEYS_PER_SYNC: usize = 5_000;
/// Buckets per window in one key's counts (the rings hold at most 31).
pub const MAX_BUCKETS_PER_WINDOW: usize = 64;
/// Windows, in this order everywhere: minute, hour, day.
pub const WINDOWS: usize = 3;
/// The windows' names, in that order.
pub const WINDOW_NAMES: [&str; WINDOWS] = ["minute", "hour", "day"];

/// The request header of a post that carries, of each key, only the buckets that can have
/// changed since the Envoy's last answered sync (value `BUCKETS_CHANGED`). Without it a post
/// carries every bucket still inside its window. Counts stay absolute either way, and the
/// control service keeps the buckets a post leaves out, so the two kinds mix freely; a control
/// service that predates the header counts a changed-only post like any other.
pub const BUCKETS_HEADER: &str = "keygate-sync-buckets";
pub const BUCKETS_CHANGED: &str = "changed";
/// What a control service that holds no counts of the posting proxy (it restarted, and keeps
/// them in memory) answers a changed-only post with: the Envoy posts every bucket at once.
pub const RESEND_EVERY_BUCKET_STATUS: u16 = 409;

/// Body of `POST /v1/ratelimits/sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSyncPost {
    /// Which Envoy sent it: stable for the Envoy's life, whichever worker sends.
    pub proxy_id: String,
    /// Width of one bucket per window, in milliseconds.
    pub bucket_ms: [u64; WINDOWS],
    /// Length of each window, in milliseconds: counts older than this are of no use.
    pub window_ms: [u64; WINDOWS],
    pub keys: Vec<KeyCounts>,
}

/// One key's counts per window: `(bucket, count)` pairs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyCounts {
    /// `key_tag` of the key.
    pub key: String,
    /// The key's limits per window as the Envoy enforces them (`null`: none), so the control
    /// service can tell keys close to their limit and push their counts to every Envoy.
    #[serde(default)]
    pub limits: [Option<u64>; WINDOWS],
    #[serde(default)]
    pub counts: [Vec<(u64, u64)>; WINDOWS],
}

/// Answer to a sync: for the keys in it and for keys near their limit anywhere, what the rest of
/// the fleet (every other Envoy) admitted per bucket still inside the window.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FleetSyncReply {
    pub keys: Vec<KeyCounts>,
    /// Keys of the post whose counts were not counted: more in a window than one Envoy can
    /// admit ([`own_count_bound`]). In JSON answers only (the binary encoding leaves it out);
    /// the rest of the post was counted either way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedCount>,
}

/// One key of a sync not counted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedCount {
    /// `key_tag` of the key.
    pub key: String,
    /// The window whose count was too high: 0 minute, 1 hour, 2 day.
    pub window: usize,
    /// What the proxy's counts in that window add up to with the post.
    pub claimed: u64,
    /// The most one Envoy can admit in it.
    pub bound: u64,
}

/// A key's limits in window order (minute, hour, day): what the filter enforces per window and
/// what a sync's `limits` carries.
pub fn window_limits(limits: &Limits) -> [Option<u64>; WINDOWS] {
    [limits.per_minute, limits.per_hour, limits.per_day]
}

/// The most one Envoy can have admitted of a key in any `window_ms` long run of buckets (the
/// filter's ring: the window's buckets plus one), by what the filter guarantees: each window is
/// a sliding window, exact per Envoy, that admits at most its limit (`src/limits/window.rs`),
/// whatever the rest of the fleet did. A window without a limit, or whose limit changed (at
/// `changed_at_ms`, Unix ms) within the last two windows (the filter's ring spans the window
/// plus a bucket, and an Envoy learns of a change a snapshot poll later, so counts an older,
/// higher limit admitted may still be in it), is bounded by `max_rate_per_s` over the window
/// instead. The control service refuses a fleet count above this (docs/security.md,
/// "Implausible fleet counts").
pub fn own_count_bound(
    limit: Option<u64>,
    changed_at_ms: u64,
    now_ms: u64,
    window_ms: u64,
    max_rate_per_s: u64,
) -> u64 {
    let by_rate = max_rate_per_s.saturating_mul(window_ms.div_ceil(1_000).max(1));
    let settled = changed_at_ms.saturating_add(window_ms.saturating_mul(2)) <= now_ms;
    match limit {
        Some(limit) if settled => limit.min(by_rate),
        _ => by_rate,
    }
}

/// Bytes of a key tag.
pub const TAG_BYTES: usize = 16;

/// The bytes of a key tag (`key_tag`): `None` for anything that is not one.
pub fn tag_bytes(tag: &str) -> Option<[u8; TAG_BYTES]> {
    if !is_key_tag(tag) {
        return None;
    }
    let mut bytes = [0u8; TAG_BYTES];
    for (byte, pair) in bytes.iter_mut().zip(tag.as_bytes().chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(bytes)
}

/// [`key_tag`] from the 64 hex digits a key's hash is stored as (`key_hash::hash_key`):
/// `None` for anything else.
pub fn key_tag_of_hash(hash: &str) -> Option<String> {
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hash[..32].to_ascii_lowercase())
}

/// The name a key is counted under fleet-wide: 32 lowercase hex digits.
pub fn key_tag(digest: &Digest) -> String {
    let mut tag = String::with_capacity(32);
    for byte in digest.iter().take(16) {
        tag.push(char::from(HEX[usize::from(byte >> 4)]));
        tag.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    tag
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `tag` is a `key_tag`.
pub fn is_key_tag(tag: &str) -> bool {
    tag.len() == 32 && tag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The checks the control service applies to a sync before counting any of it.
pub fn validate_post(post: &FleetSyncPost) -> Result<(), FieldError> {
    fields::identifier("proxy_id", &post.proxy_id)?;
    for window in 0..WINDOWS {
        let (bucket, length) = (post.bucket_ms[window], post.window_ms[window]);
        if bucket == 0 || length == 0 || bucket > length {
            return Err(FieldError::new(
                format!("bucket_ms[{window}]"),
                "must be positive and at most the window",
            ));
        }
        if length / bucket > MAX_BUCKETS_PER_WINDOW as u64 {
            return Err(FieldError::new(
                format!("window_ms[{window}]"),
                format!("must span at most {MAX_BUCKETS_PER_WINDOW} buckets"),
            ));
        }
    }
    if post.keys.len() > MAX_KEYS_PER_SYNC {
        return Err(FieldError::new(
            "keys",
            format!("must hold at most {MAX_KEYS_PER_SYNC} keys"),
        ));
    }
    for (index, key) in post.keys.iter().enumerate() {
        validate_counts(&format!("keys[{index}]"), key)?;
    }
    Ok(())
}

/// A key's entry, as either side checks it: a tag, bounded bucket lists.
pub fn validate_counts(field: &str, key: &KeyCounts) -> Result<(), FieldError> {
    if !is_key_tag(&key.key) {
        return Err(FieldError::new(
            format!("{field}.key"),
            "must be 32 lowercase hex digits",
        ));
    }
    for (window, counts) in key.counts.iter().enumerate() {
        if counts.len() > MAX_BUCKETS_PER_WINDOW {
            return Err(FieldError::new(
                format!("{field}.counts[{window}]"),
                format!("must hold at most {MAX_BUCKETS_PER_WINDOW} buckets"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envoy_admits_at_most_the_window_limit_or_the_rate_over_the_window() {
        let now = 10_000_000_000;
        assert_eq!(own_count_bound(Some(60), 0, now, 60_000, 200_000), 60);
        assert_eq!(
            own_count_bound(Some(60), now - 119_999, now, 60_000, 200_000),
            12_000_000,
            "changed within two windows: the rate"
        );
        assert_eq!(
            own_count_bound(Some(60), now - 120_000, now, 60_000, 200_000),
            60
        );
        assert_eq!(own_count_bound(None, 0, now, 3_600_000, 10), 36_000);
        assert_eq!(own_count_bound(Some(5), 0, now, 1, 1), 1, "the rate caps");
        assert_eq!(own_count_bound(None, 0, now, u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn tags_read_as_their_bytes() {
        let tag = "00ff10a0".repeat(4);
        assert_eq!(tag_bytes(&tag).unwrap()[..4], [0x00, 0xff, 0x10, 0xa0]);
        assert_eq!(tag_bytes(&"0F".repeat(16)), None, "upper case is not a tag");
        assert_eq!(tag_bytes("00"), None);
    }

    #[test]
    fn the_tag_from_a_stored_hash_is_the_tag_of_the_digest() {
        let digest = crate::key_hash::digest_key("pk_live_abc");
        let stored = crate::key_hash::hash_key("pk_live_abc");
        assert_eq!(key_tag_of_hash(&stored), Some(key_tag(&digest)));
        assert_eq!(key_tag_of_hash("abc"), None);
    }

    fn post(keys: Vec<KeyCounts>) -> FleetSyncPost {
        FleetSyncPost {
            proxy_id: "envoy-1".into(),
            bucket_ms: [2_000, 120_000, 3_600_000],
            window_ms: [60_000, 3_600_000, 86_400_000],
            keys,
        }
    }

    #[test]
    fn a_tag_is_the_first_half_of_the_digest_in_hex() {
        let mut digest = [0u8; 32];
        digest[0] = 0xab;
        digest[15] = 0x01;
        digest[16] = 0xff;
        let tag = key_tag(&digest);
        assert_eq!(tag, format!("ab{}01", "0".repeat(28)));
        assert!(is_key_tag(&tag));
        assert!(!is_key_tag(&tag.to_uppercase()));
        assert!(!is_key_tag(&tag[1..]));
    }

    #[test]
    fn unknown_fields_are_ignored_and_counts_travel_as_pairs() {
        let body = format!(
            r#"{{"proxy_id":"p","bucket_ms":[1,2,3],"window_ms":[4,5,6],"later":true,
                "keys":[{{"key":"{}","limits":[6,null,null],"counts":[[[10,3]],[],[]],"x":1}}]}}"#,
            "a".repeat(32)
        );
        let read: FleetSyncPost = serde_json::from_str(&body).unwrap();
        assert_eq!(read.keys[0].counts[0], vec![(10, 3)]);
        assert_eq!(read.keys[0].limits, [Some(6), None, None]);
        let again: FleetSyncPost =
            serde_json::from_slice(&serde_json::to_vec(&read).unwrap()).unwrap();
        assert_eq!(again, read);
    }

    #[test]
    fn validation_names_the_field() {
        let good = KeyCounts {
            key: "0".repeat(32),
            ..KeyCounts::default()
        };
        assert!(validate_post(&post(vec![good.clone()])).is_ok());
        let bad_tag = KeyCounts {
            key: "xyz".into(),
            ..KeyCounts::default()
        };
        let error = validate_post(&post(vec![good.clone(), bad_tag])).unwrap_err();
        assert_eq!(error.field, "keys[1].key");
        let mut too_many_buckets = good.clone();
        too_many_buckets.counts[2] = vec![(1, 1); MAX_BUCKETS_PER_WINDOW + 1];
        let error = validate_post(&post(vec![too_many_buckets])).unwrap_err();
        assert_eq!(error.field, "keys[0].counts[2]");
        let mut zero_bucket = post(vec![]);
        zero_bucket.bucket_ms[1] = 0;
        assert_eq!(
            validate_post(&zero_bucket).unwrap_err().field,
            "bucket_ms[1]"
        );
        let mut fine_grained = post(vec![]);
        fine_grained.bucket_ms[0] = 10;
        assert_eq!(
            validate_post(&fine_grained).unwrap_err().field,
            "window_ms[0]"
        );
        let mut anonymous = post(vec![]);
        anonymous.proxy_id = String::new();
        assert_eq!(validate_post(&anonymous).unwrap_err().field, "proxy_id");
        assert!(validate_post(&post(vec![good; MAX_KEYS_PER_SYNC + 1])).is_err());
    }
}
