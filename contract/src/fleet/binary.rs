//! The compact binary encoding of the fleet sync (`application/vnd.keygate.fleet-sync+binary`),
//! the one definition of it: the filter encodes its post and decodes the reply with these
//! functions, the control service the other way round. It carries exactly what the JSON
//! messages (`FleetSyncPost`, `FleetSyncReply`) carry, in about a fifth of the bytes: a sync of
//! 1,000 keys with 30 minute buckets is ~520 KB of JSON, almost all of it bucket numbers
//! written out in decimal. `docs/rate-limits.md` gives the layout byte by byte.
//!
//! Every integer is an unsigned LEB128 varint (canonical: no padding bytes). A message is
//! `MAGIC` (`KGFS`, the format version, `KIND_POST` or `KIND_REPLY`), its fields, and nothing
//! after them. A key is its tag as 16 raw bytes, a presence bitmap of its limits and the limits
//! present, then per window the number of buckets and the `(bucket, count)` pairs, each bucket
//! as the zigzag-encoded difference from the one before (the first from 0): consecutive minute
//! buckets take one byte each instead of eight or nine digits.
//!
//! Unlike the snapshot's records, nothing here is framed for partial reading: a sync is counted
//! whole or not at all, so any damage (truncation, an overlong varint, a count over the
//! contract's bounds, a bit that means nothing, bytes after the end) is an error. Decoding never
//! panics and never allocates for a count it has not checked against the bytes present and
//! against `MAX_KEYS_PER_SYNC` / `MAX_BUCKETS_PER_WINDOW`. What decodes still goes through
//! `fleet::validate_post` / `fleet::validate_counts`, like the JSON message.

use std::fmt;

use super::{FleetSyncPost, FleetSyncReply, KeyCounts, MAX_BUCKETS_PER_WINDOW, MAX_KEYS_PER_SYNC};
use super::{HEX, WINDOWS};
use crate::fields::FieldError;
use crate::reader::Reader;

/// The media type of this encoding, in `Content-Type` (a post) and `Accept` (for the reply).
pub const MEDIA_TYPE: &str = "application/vnd.keygate.fleet-sync+binary";
/// What a client that sends binary asks to be answered in: binary, JSON otherwise.
pub const ACCEPT: &str = "application/vnd.keygate.fleet-sync+binary, application/json;q=0.5";
/// The first bytes of every message: `KGFS` and the format version (1). A JSON message starts
/// with `{` or whitespace, so the two are never confused.
pub const MAGIC: &[u8; 5] = b"KGFS\x01";
/// The byte after `MAGIC` of a post, and of a reply: one can never be read as the other.
pub const KIND_POST: u8 = b'P';
pub const KIND_REPLY: u8 = b'R';

/// Bytes of a key's tag (`fleet::key_tag` is these in hex).
use super::{tag_bytes, TAG_BYTES};
/// The smallest key: its tag, an empty limit bitmap, three empty windows.
const MIN_KEY_BYTES: usize = TAG_BYTES + 1 + WINDOWS;
/// The smallest `(bucket, count)` pair: two one-byte varints.
const MIN_PAIR_BYTES: usize = 2;
/// The limit bitmap's meaningful bits: one per window.
const LIMIT_BITS: u8 = (1 << WINDOWS) - 1;

/// Why bytes are not a fleet sync message: what was being read when it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Whether `body` is in this encoding (rather than JSON), by its first bytes.
pub fn is_binary(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

fn damage(what: &str) -> DecodeError {
    DecodeError(format!("{what}: truncated or malformed"))
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        // The low seven bits, with the continuation bit set.
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Maps a signed difference onto small unsigned values: 0, -1, 1, -2, … → 0, 1, 2, 3, …
fn zigzag(delta: i64) -> u64 {
    ((delta << 1) ^ (delta >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// The 16 bytes a 32-hex-digit tag stands for.
fn tag_text(bytes: &[u8; TAG_BYTES]) -> String {
    let mut tag = String::with_capacity(2 * TAG_BYTES);
    for byte in bytes {
        tag.push(char::from(HEX[usize::from(byte >> 4)]));
        tag.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    tag
}

/// Appends key `index` of `field`. Its tag must be a `key_tag`; nothing else can fail.
fn put_key(
    out: &mut Vec<u8>,
    field: &str,
    index: usize,
    key: &KeyCounts,
) -> Result<(), FieldError> {
    let tag = tag_bytes(&key.key).ok_or_else(|| {
        FieldError::new(
            format!("{field}[{index}].key"),
            "must be 32 lowercase hex digits",
        )
    })?;
    out.extend_from_slice(&tag);
    let present = key
        .limits
        .iter()
        .enumerate()
        .filter(|(_, limit)| limit.is_some())
        .fold(0u8, |bits, (window, _)| bits | 1 << window);
    out.push(present);
    for limit in key.limits.iter().flatten() {
        put_varint(out, *limit);
    }
    for counts in &key.counts {
        put_varint(out, counts.len() as u64);
        let mut previous = 0u64;
        for &(bucket, count) in counts {
            // Wrapping both ways, so any order of buckets round-trips exactly.
            put_varint(out, zigzag(bucket.wrapping_sub(previous) as i64));
            put_varint(out, count);
            previous = bucket;
        }
    }
    Ok(())
}

fn put_keys(out: &mut Vec<u8>, field: &str, keys: &[KeyCounts]) -> Result<(), FieldError> {
    put_varint(out, keys.len() as u64);
    for (index, key) in keys.iter().enumerate() {
        put_key(out, field, index, key)?;
    }
    Ok(())
}

/// Bytes a key of `key` takes, about: to size the output once.
fn estimated_key_bytes(key: &KeyCounts) -> usize {
    MIN_KEY_BYTES + 3 * WINDOWS + key.counts.iter().map(|c| 4 * c.len()).sum::<usize>()
}

/// A post in this encoding. Fails, naming the field, only for a key whose tag is not a
/// `key_tag` (which `validate_post` refuses too).
pub fn encode_post(post: &FleetSyncPost) -> Result<Vec<u8>, FieldError> {
    let estimate =
        64 + post.proxy_id.len() + post.keys.iter().map(estimated_key_bytes).sum::<usize>();
    let mut out = Vec::with_capacity(estimate);
    out.extend_from_slice(MAGIC);
    out.push(KIND_POST);
    put_varint(&mut out, post.proxy_id.len() as u64);
    out.extend_from_slice(post.proxy_id.as_bytes());
    for value in post.bucket_ms.iter().chain(&post.window_ms) {
        put_varint(&mut out, *value);
    }
    put_keys(&mut out, "keys", &post.keys)?;
    Ok(out)
}

/// A reply in this encoding; fails like `encode_post`.
pub fn encode_reply(reply: &FleetSyncReply) -> Result<Vec<u8>, FieldError> {
    let estimate = 16 + reply.keys.iter().map(estimated_key_bytes).sum::<usize>();
    let mut out = Vec::with_capacity(estimate);
    out.extend_from_slice(MAGIC);
    out.push(KIND_REPLY);
    put_keys(&mut out, "keys", &reply.keys)?;
    Ok(out)
}

/// Reads the magic and the kind byte.
fn read_start(reader: &mut Reader<'_>, kind: u8) -> Result<(), DecodeError> {
    match reader.take(MAGIC.len()) {
        Some(magic) if magic == MAGIC => {}
        Some(magic) if magic.starts_with(b"KGFS") => {
            return Err(DecodeError(
                "unsupported fleet sync encoding version".into(),
            ))
        }
        _ => return Err(DecodeError("not a binary fleet sync message".into())),
    }
    match reader.u8() {
        Some(found) if found == kind => Ok(()),
        Some(KIND_POST | KIND_REPLY) => Err(DecodeError(format!(
            "kind: not a fleet sync {}",
            if kind == KIND_POST { "post" } else { "reply" }
        ))),
        _ => Err(damage("kind")),
    }
}

/// A count, refused when above `max` or when the bytes left cannot hold that many items of at
/// least `min_item_bytes` each: nothing is allocated for a count the body does not back.
/// `field` names what is read, made only for an error (a sync reads thousands of counts).
fn read_count(
    reader: &mut Reader<'_>,
    field: impl Fn() -> String,
    max: usize,
    min_item_bytes: usize,
) -> Result<usize, DecodeError> {
    let count = reader.varint().ok_or_else(|| damage(&field()))?;
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if count > max {
        return Err(DecodeError(format!("{}: more than {max}", field())));
    }
    if count > reader.bytes.len() / min_item_bytes {
        return Err(DecodeError(format!(
            "{}: count larger than the body",
            field()
        )));
    }
    Ok(count)
}

/// Key `index` of a message's keys.
fn read_key(reader: &mut Reader<'_>, index: usize) -> Result<KeyCounts, DecodeError> {
    let field = format_args!("keys[{index}]");
    let tag: [u8; TAG_BYTES] = reader
        .array()
        .ok_or_else(|| damage(&format!("{field}.key")))?;
    let present = reader
        .u8()
        .ok_or_else(|| damage(&format!("{field}.limits")))?;
    if present & !LIMIT_BITS != 0 {
        return Err(DecodeError(format!("{field}.limits: unknown bits set")));
    }
    let mut limits = [None; WINDOWS];
    for (window, limit) in limits.iter_mut().enumerate() {
        if present & (1 << window) != 0 {
            let value = reader
                .varint()
                .ok_or_else(|| damage(&format!("{field}.limits[{window}]")))?;
            *limit = Some(value);
        }
    }
    let mut counts: [Vec<(u64, u64)>; WINDOWS] = Default::default();
    for (window, pairs) in counts.iter_mut().enumerate() {
        let counts_field = || format!("{field}.counts[{window}]");
        let length = read_count(reader, counts_field, MAX_BUCKETS_PER_WINDOW, MIN_PAIR_BYTES)?;
        pairs.reserve_exact(length);
        let mut previous = 0u64;
        for _ in 0..length {
            let delta = reader.varint().ok_or_else(|| damage(&counts_field()))?;
            let count = reader.varint().ok_or_else(|| damage(&counts_field()))?;
            let bucket = previous.wrapping_add(unzigzag(delta) as u64);
            pairs.push((bucket, count));
            previous = bucket;
        }
    }
    Ok(KeyCounts {
        key: tag_text(&tag),
        limits,
        counts,
    })
}

fn read_keys(reader: &mut Reader<'_>) -> Result<Vec<KeyCounts>, DecodeError> {
    let count = read_count(reader, || "keys".into(), MAX_KEYS_PER_SYNC, MIN_KEY_BYTES)?;
    let mut keys = Vec::with_capacity(count);
    for index in 0..count {
        keys.push(read_key(reader, index)?);
    }
    Ok(keys)
}

fn read_end(reader: &Reader<'_>) -> Result<(), DecodeError> {
    if reader.bytes.is_empty() {
        Ok(())
    } else {
        Err(DecodeError("bytes after the last key".into()))
    }
}

/// A post from this encoding. What decodes still needs `fleet::validate_post`.
pub fn decode_post(bytes: &[u8]) -> Result<FleetSyncPost, DecodeError> {
    let mut reader = Reader::new(bytes);
    read_start(&mut reader, KIND_POST)?;
    let length = read_count(&mut reader, || "proxy_id".into(), usize::MAX, 1)?;
    let proxy_id = reader
        .text(length)
        .ok_or_else(|| DecodeError("proxy_id: not UTF-8".into()))?
        .to_string();
    let mut bucket_ms = [0u64; WINDOWS];
    let mut window_ms = [0u64; WINDOWS];
    for (field, values) in [("bucket_ms", &mut bucket_ms), ("window_ms", &mut window_ms)] {
        for (window, value) in values.iter_mut().enumerate() {
            *value = reader
                .varint()
                .ok_or_else(|| damage(&format!("{field}[{window}]")))?;
        }
    }
    let keys = read_keys(&mut reader)?;
    read_end(&reader)?;
    Ok(FleetSyncPost {
        proxy_id,
        bucket_ms,
        window_ms,
        keys,
    })
}

/// A reply from this encoding. Each key still needs `fleet::validate_counts`.
pub fn decode_reply(bytes: &[u8]) -> Result<FleetSyncReply, DecodeError> {
    let mut reader = Reader::new(bytes);
    read_start(&mut reader, KIND_REPLY)?;
    let keys = read_keys(&mut reader)?;
    read_end(&reader)?;
    Ok(FleetSyncReply {
        keys,
        ..FleetSyncReply::default()
    })
}

#[cfg(test)]
mod tests;
