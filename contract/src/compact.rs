//! The compact binary snapshot encoding (`application/vnd.keygate.snapshot+binary`), the one
//! definition of it: the control service encodes with these functions, the filter decodes with
//! them. It carries exactly what a JSON page (`contract::snapshot`) carries, in about a third of
//! the bytes and without text parsing: hashes as 32 raw bytes, instants as Unix seconds.
//! `docs/snapshot.md` gives the layout byte by byte.
//!
//! Integers are little-endian. Strings are a u16 byte length and UTF-8. A page is `MAGIC`, a
//! u32-framed header, the records each framed by a u32 length, then the deletions (32 bytes
//! each) and nothing after them. Framing lets a record whose body does not decode be
//! quarantined alone (`contract::record::validate_page`); bytes after the known fields of the
//! header or of a record are ignored, so a newer control service can append fields that older
//! filters skip.
//!
//! Decoding never panics and never allocates in proportion to a count it has not checked
//! against the bytes actually present.

use std::fmt;

use crate::fields::{self, FieldError};
use crate::key_hash::{parse_hex_digest, Digest};
use crate::reader::Reader;
use crate::snapshot::{KeyRecord, Limits};

/// The media type a client asks for in `Accept` to get this encoding.
pub const MEDIA_TYPE: &str = "application/vnd.keygate.snapshot+binary";
/// The first bytes of every compact page: `KGSNAP`, then the format version (1) as a big-endian
/// u16. A JSON page starts with `{` (or whitespace), so the two can never be confused.
pub const MAGIC: &[u8; 8] = b"KGSNAP\x00\x01";

const FLAG_FULL: u8 = 1;
const FLAG_NEXT_CURSOR: u8 = 2;
const FLAG_ACTIVE: u8 = 1;
const FLAG_EXPIRES_AT: u8 = 2;
const FLAG_QUOTA: u8 = 4;
const LIMIT_PER_MINUTE: u8 = 1;
const LIMIT_PER_HOUR: u8 = 2;
const LIMIT_PER_DAY: u8 = 4;
const LIMIT_CONCURRENT: u8 = 8;
/// Bytes of a deletion: one raw SHA-256 digest.
const DIGEST_BYTES: usize = 32;
/// The smallest framed record: its length alone.
const FRAME_BYTES: usize = 4;

/// Whether `body` is a compact page (rather than JSON), by its first bytes.
pub fn is_compact(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// A page's own fields: everything but its records and deletions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageHeader {
    pub version: u64,
    pub since: u64,
    pub full: bool,
    pub epoch: String,
    pub next_cursor: Option<String>,
    /// For a full snapshot, the keys in the whole snapshot (all pages), so the filter can size
    /// its store before the first page is written; 0 when the server does not know.
    pub total_keys: u64,
}

/// One key record as the compact encoding carries it: a `KeyRecord` whose hash and instants
/// are already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub hash: Digest,
    pub id: String,
    pub prefix: String,
    pub last4: String,
    pub name: String,
    pub team: String,
    pub environment: String,
    pub plan: String,
    pub scopes: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub active: bool,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// Unix seconds.
    pub quota_exceeded_until: Option<i64>,
    pub limits: Limits,
}

/// A record whose body does not decode: what could be read of it, to log it by id and to
/// delete the key its hash names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub hash: Option<Digest>,
    pub id: String,
    pub error: FieldError,
}

/// Structural damage: the bytes are not a compact page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A compact page split into its parts; records are decoded one by one with `decode_record`.
/// Borrows from the response body.
#[derive(Debug)]
pub struct Page<'a> {
    pub header: PageHeader,
    /// Each record's body (its frame removed).
    pub records: Vec<&'a [u8]>,
    deleted: &'a [u8],
}

impl Page<'_> {
    /// The hashes of the keys removed (deltas only).
    pub fn deleted(&self) -> impl ExactSizeIterator<Item = Digest> + '_ {
        self.deleted
            .chunks_exact(DIGEST_BYTES)
            // Every chunk is exactly 32 bytes, so the default is never taken.
            .map(|chunk| Digest::try_from(chunk).unwrap_or_default())
    }
}

/// A u16-length-prefixed string: `None` when truncated, `Some(Err)` when not UTF-8.
fn prefixed_text<'a>(reader: &mut Reader<'a>) -> Option<Result<&'a str, std::str::Utf8Error>> {
    let length = reader.u16()?;
    reader.take(usize::from(length)).map(std::str::from_utf8)
}

fn damage(what: &str) -> DecodeError {
    DecodeError(format!("{what}: truncated or malformed"))
}

/// Splits a compact page into header, record bodies and deletions. Structural damage (wrong
/// magic, a truncated header, counts the bytes cannot hold, bytes after the deletions) is an
/// error; what is inside each record is not looked at here.
pub fn decode_page(bytes: &[u8]) -> Result<Page<'_>, DecodeError> {
    let mut reader = Reader::new(bytes);
    match reader.take(MAGIC.len()) {
        Some(magic) if magic == MAGIC => {}
        Some(magic) if magic.starts_with(b"KGSNAP") => {
            return Err(DecodeError("unsupported compact snapshot version".into()))
        }
        _ => return Err(DecodeError("not a compact snapshot".into())),
    }
    let header_length = reader.u32().ok_or_else(|| damage("header"))?;
    let header_bytes = usize::try_from(header_length)
        .ok()
        .and_then(|length| reader.take(length))
        .ok_or_else(|| damage("header"))?;
    let (header, record_count, deleted_count) = decode_header(header_bytes)?;
    // Every record takes at least its frame: a count the remaining bytes cannot hold is
    // rejected before anything is allocated for it.
    let record_count = usize::try_from(record_count).unwrap_or(usize::MAX);
    if record_count > reader.bytes.len() / FRAME_BYTES {
        return Err(DecodeError("records: count larger than the page".into()));
    }
    let mut records = Vec::with_capacity(record_count);
    for index in 0..record_count {
        let body = reader
            .u32()
            .and_then(|length| usize::try_from(length).ok())
            .and_then(|length| reader.take(length))
            .ok_or_else(|| DecodeError(format!("keys[{index}]: frame runs past the page")))?;
        records.push(body);
    }
    let deleted_bytes = usize::try_from(deleted_count)
        .ok()
        .and_then(|count| count.checked_mul(DIGEST_BYTES));
    match deleted_bytes {
        Some(length) if length == reader.bytes.len() => {}
        Some(length) if length < reader.bytes.len() => {
            return Err(DecodeError("page: bytes after the deletions".into()))
        }
        _ => return Err(DecodeError("deleted: count larger than the page".into())),
    }
    Ok(Page {
        header,
        records,
        deleted: reader.bytes,
    })
}

/// The header and the record and deletion counts it announces.
fn decode_header(bytes: &[u8]) -> Result<(PageHeader, u32, u32), DecodeError> {
    let mut reader = Reader::new(bytes);
    let truncated = || damage("header");
    let version = reader.u64().ok_or_else(truncated)?;
    let since = reader.u64().ok_or_else(truncated)?;
    let flags = reader.u8().ok_or_else(truncated)?;
    let epoch = prefixed_text(&mut reader)
        .ok_or_else(truncated)?
        .map_err(|_| DecodeError("epoch: not UTF-8".into()))?;
    let next_cursor = if flags & FLAG_NEXT_CURSOR != 0 {
        let cursor = prefixed_text(&mut reader)
            .ok_or_else(truncated)?
            .map_err(|_| DecodeError("next_cursor: not UTF-8".into()))?;
        Some(cursor.to_string())
    } else {
        None
    };
    let total_keys = reader.u64().ok_or_else(truncated)?;
    let record_count = reader.u32().ok_or_else(truncated)?;
    let deleted_count = reader.u32().ok_or_else(truncated)?;
    // Anything left in the header is a field a newer encoder added: ignored.
    let header = PageHeader {
        version,
        since,
        full: flags & FLAG_FULL != 0,
        epoch: epoch.to_string(),
        next_cursor,
        total_keys,
    };
    Ok((header, record_count, deleted_count))
}

fn unreadable(hash: Option<Digest>, id: &str, field: &str, message: &str) -> Unreadable {
    Unreadable {
        hash,
        id: id.to_string(),
        error: FieldError::new(field, message),
    }
}

fn read_text(
    reader: &mut Reader<'_>,
    hash: Digest,
    id: &str,
    field: &str,
) -> Result<String, Unreadable> {
    match prefixed_text(reader) {
        Some(Ok(text)) => Ok(text.to_string()),
        Some(Err(_)) => Err(unreadable(Some(hash), id, field, "not UTF-8")),
        None => Err(unreadable(Some(hash), id, field, "truncated")),
    }
}

fn read_list(
    reader: &mut Reader<'_>,
    hash: Digest,
    id: &str,
    field: &str,
) -> Result<Vec<String>, Unreadable> {
    let count = reader
        .u16()
        .map(usize::from)
        .ok_or_else(|| unreadable(Some(hash), id, field, "truncated"))?;
    // Each entry takes at least its 2-byte length: a count the body cannot hold allocates
    // nothing.
    if count > reader.bytes.len() / 2 {
        return Err(unreadable(Some(hash), id, field, "truncated"));
    }
    let mut entries = Vec::with_capacity(count);
    for index in 0..count {
        entries.push(read_text(reader, hash, id, &format!("{field}[{index}]"))?);
    }
    Ok(entries)
}

/// Decodes one record body. Bytes after the known fields are ignored (fields a newer control
/// service appended); a body that ends early or holds text that is not UTF-8 is `Unreadable`,
/// with as much of its identity (hash first, then id) as could be read.
pub fn decode_record(body: &[u8]) -> Result<Record, Unreadable> {
    let mut reader = Reader::new(body);
    let hash: Option<Digest> = reader.array();
    let Some(hash) = hash else {
        return Err(unreadable(None, "", "hash", "truncated"));
    };
    let id = read_text(&mut reader, hash, "", "id")?;
    let prefix = read_text(&mut reader, hash, &id, "prefix")?;
    let last4 = read_text(&mut reader, hash, &id, "last4")?;
    let name = read_text(&mut reader, hash, &id, "name")?;
    let team = read_text(&mut reader, hash, &id, "team")?;
    let environment = read_text(&mut reader, hash, &id, "environment")?;
    let plan = read_text(&mut reader, hash, &id, "plan")?;
    let scopes = read_list(&mut reader, hash, &id, "scopes")?;
    let allowed_ips = read_list(&mut reader, hash, &id, "allowed_ips")?;
    let truncated = |field: &str| unreadable(Some(hash), &id, field, "truncated");
    let flags = reader.u8().ok_or_else(|| truncated("active"))?;
    let expires_at = if flags & FLAG_EXPIRES_AT != 0 {
        Some(reader.i64().ok_or_else(|| truncated("expires_at"))?)
    } else {
        None
    };
    let quota_exceeded_until = if flags & FLAG_QUOTA != 0 {
        Some(
            reader
                .i64()
                .ok_or_else(|| truncated("quota_exceeded_until"))?,
        )
    } else {
        None
    };
    let present = reader.u8().ok_or_else(|| truncated("limits"))?;
    let mut limit = |bit: u8, field: &str| -> Result<Option<u64>, Unreadable> {
        if present & bit == 0 {
            return Ok(None);
        }
        reader.u64().map(Some).ok_or_else(|| truncated(field))
    };
    let limits = Limits {
        per_minute: limit(LIMIT_PER_MINUTE, "limits.per_minute")?,
        per_hour: limit(LIMIT_PER_HOUR, "limits.per_hour")?,
        per_day: limit(LIMIT_PER_DAY, "limits.per_day")?,
        concurrent: limit(LIMIT_CONCURRENT, "limits.concurrent")?,
    };
    Ok(Record {
        hash,
        id,
        prefix,
        last4,
        name,
        team,
        environment,
        plan,
        scopes,
        allowed_ips,
        active: flags & FLAG_ACTIVE != 0,
        expires_at,
        quota_exceeded_until,
        limits,
    })
}

fn put_text(out: &mut Vec<u8>, field: &str, text: &str) -> Result<(), FieldError> {
    let length =
        u16::try_from(text.len()).map_err(|_| FieldError::new(field, "longer than 65535 bytes"))?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn put_list(out: &mut Vec<u8>, field: &str, entries: &[String]) -> Result<(), FieldError> {
    let count = u16::try_from(entries.len())
        .map_err(|_| FieldError::new(field, "more than 65535 entries"))?;
    out.extend_from_slice(&count.to_le_bytes());
    for (index, entry) in entries.iter().enumerate() {
        put_text(out, &format!("{field}[{index}]"), entry)?;
    }
    Ok(())
}

/// Frames a record body: its u32 length, then the body.
fn frame(body: Vec<u8>) -> Vec<u8> {
    let length = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut framed = Vec::with_capacity(body.len() + FRAME_BYTES);
    framed.extend_from_slice(&length.to_le_bytes());
    framed.extend(body);
    framed
}

/// The framed record for `record`, ready to be concatenated into a page. An error names the
/// field that cannot be encoded (a hash that is not hex, an instant that is not RFC 3339);
/// the caller then sends `encode_unreadable` in its place so the filter quarantines the key.
pub fn encode_record(record: &KeyRecord) -> Result<Vec<u8>, FieldError> {
    let hash = parse_hex_digest(&record.hash)
        .ok_or_else(|| FieldError::new("hash", "must be 64 lowercase hex characters"))?;
    let expires_at = fields::instant("expires_at", record.expires_at.as_deref())?;
    let quota_exceeded_until = fields::instant(
        "quota_exceeded_until",
        record.quota_exceeded_until.as_deref(),
    )?;
    let mut body = Vec::with_capacity(128);
    body.extend_from_slice(&hash);
    for (field, text) in [
        ("id", &record.id),
        ("prefix", &record.prefix),
        ("last4", &record.last4),
        ("name", &record.name),
        ("team", &record.team),
        ("environment", &record.environment),
        ("plan", &record.plan),
    ] {
        put_text(&mut body, field, text)?;
    }
    put_list(&mut body, "scopes", &record.scopes)?;
    put_list(&mut body, "allowed_ips", &record.allowed_ips)?;
    let mut flags = 0;
    if record.active {
        flags |= FLAG_ACTIVE;
    }
    if expires_at.is_some() {
        flags |= FLAG_EXPIRES_AT;
    }
    if quota_exceeded_until.is_some() {
        flags |= FLAG_QUOTA;
    }
    body.push(flags);
    for at in [expires_at, quota_exceeded_until].into_iter().flatten() {
        body.extend_from_slice(&at.to_le_bytes());
    }
    let limits = [
        (LIMIT_PER_MINUTE, record.limits.per_minute),
        (LIMIT_PER_HOUR, record.limits.per_hour),
        (LIMIT_PER_DAY, record.limits.per_day),
        (LIMIT_CONCURRENT, record.limits.concurrent),
    ];
    body.push(
        limits
            .iter()
            .filter(|(_, value)| value.is_some())
            .fold(0, |mask, (bit, _)| mask | bit),
    );
    for value in limits.iter().filter_map(|(_, value)| *value) {
        body.extend_from_slice(&value.to_le_bytes());
    }
    Ok(frame(body))
}

/// A framed record holding only a hash and an id: the filter cannot decode it, so it
/// quarantines the key (denies it, logs the id) as it would a JSON record that does not parse.
pub fn encode_unreadable(hash: &Digest, id: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(DIGEST_BYTES + 2 + id.len());
    body.extend_from_slice(hash);
    // An id too long for a u16 length is cut at a character boundary: it is only for the log.
    let mut end = id.len().min(usize::from(u16::MAX));
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    let _ = put_text(&mut body, "id", id.get(..end).unwrap_or_default());
    frame(body)
}

/// A whole page: `header`, then `records` (`record_count` framed records, concatenated as
/// `encode_record` made them), then `deleted`.
pub fn encode_page(
    header: &PageHeader,
    record_count: u32,
    records: &[u8],
    deleted: &[Digest],
) -> Result<Vec<u8>, FieldError> {
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(&header.version.to_le_bytes());
    head.extend_from_slice(&header.since.to_le_bytes());
    let mut flags = 0;
    if header.full {
        flags |= FLAG_FULL;
    }
    if header.next_cursor.is_some() {
        flags |= FLAG_NEXT_CURSOR;
    }
    head.push(flags);
    put_text(&mut head, "epoch", &header.epoch)?;
    if let Some(cursor) = &header.next_cursor {
        put_text(&mut head, "next_cursor", cursor)?;
    }
    head.extend_from_slice(&header.total_keys.to_le_bytes());
    head.extend_from_slice(&record_count.to_le_bytes());
    let deleted_count =
        u32::try_from(deleted.len()).map_err(|_| FieldError::new("deleted", "too many"))?;
    head.extend_from_slice(&deleted_count.to_le_bytes());
    let mut page =
        Vec::with_capacity(MAGIC.len() + 4 + head.len() + records.len() + 32 * deleted.len());
    page.extend_from_slice(MAGIC);
    page.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_le_bytes());
    page.extend(head);
    page.extend_from_slice(records);
    for digest in deleted {
        page.extend_from_slice(digest);
    }
    Ok(page)
}

#[cfg(test)]
mod tests;
