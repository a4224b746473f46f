//! The header-map wire format of the proxy-wasm ABI (a pair count, a size table, then
//! NUL-terminated names and values), read by a pure, bounds-checked parser, and the property
//! path format.
//!
//! The request path reads the map the host hands over in place (`Headers`): checked once, then
//! iterated as borrowed `(name, value)` pairs, instead of a `String` and a `Vec` per header
//! (cookies included) on every request.

use std::fmt;

/// Why a serialized header map could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapDecodeError {
    /// Shorter than its pair count and size table say.
    Truncated,
    /// A name or value is not followed by the NUL the format puts after each string.
    MissingNul,
    /// Bytes left over after the last pair.
    TrailingBytes,
    /// A header name that is not UTF-8.
    NameNotUtf8,
}

impl fmt::Display for MapDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapDecodeError::Truncated => "shorter than its count and sizes say",
            MapDecodeError::MissingNul => "a string is not NUL-terminated",
            MapDecodeError::TrailingBytes => "bytes left after the last pair",
            MapDecodeError::NameNotUtf8 => "a header name is not UTF-8",
        })
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, MapDecodeError> {
    let end = at.checked_add(4).ok_or(MapDecodeError::Truncated)?;
    match bytes.get(at..end) {
        Some(&[a, b, c, d]) => Ok(u32::from_le_bytes([a, b, c, d])),
        _ => Err(MapDecodeError::Truncated),
    }
}

/// The `len` bytes at `at` and the position after their NUL terminator.
fn read_string(bytes: &[u8], at: usize, len: usize) -> Result<(&[u8], usize), MapDecodeError> {
    let end = at.checked_add(len).ok_or(MapDecodeError::Truncated)?;
    let text = bytes.get(at..end).ok_or(MapDecodeError::Truncated)?;
    match bytes.get(end) {
        Some(0) => Ok((text, end + 1)),
        Some(_) => Err(MapDecodeError::MissingNul),
        None => Err(MapDecodeError::Truncated),
    }
}

/// A serialized header map, checked once (every size within the bytes, every string
/// NUL-terminated, every name UTF-8) and read in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    bytes: Vec<u8>,
    count: usize,
}

impl Headers {
    /// Checks a map in the ABI's serialization: the pair count (u32, little endian), then the
    /// name and value size of each pair (u32 each), then each name and value followed by a
    /// NUL. Empty input is an empty map. Values stay bytes (they need not be UTF-8).
    pub fn parse(bytes: Vec<u8>) -> Result<Headers, MapDecodeError> {
        if bytes.is_empty() {
            return Ok(Headers::default());
        }
        let count = read_u32(&bytes, 0)? as usize;
        let table_end = count
            .checked_mul(8)
            .and_then(|sizes| sizes.checked_add(4))
            .ok_or(MapDecodeError::Truncated)?;
        if table_end > bytes.len() {
            return Err(MapDecodeError::Truncated);
        }
        let mut at = table_end;
        for index in 0..count {
            let entry = 4 + index * 8;
            let name_len = read_u32(&bytes, entry)? as usize;
            let value_len = read_u32(&bytes, entry + 4)? as usize;
            let (name, after_name) = read_string(&bytes, at, name_len)?;
            std::str::from_utf8(name).map_err(|_| MapDecodeError::NameNotUtf8)?;
            let (_, after_value) = read_string(&bytes, after_name, value_len)?;
            at = after_value;
        }
        if at != bytes.len() {
            return Err(MapDecodeError::TrailingBytes);
        }
        Ok(Headers { bytes, count })
    }

    /// The map holding `pairs` (fakes, and the native build, whose host hands headers over as
    /// pairs): names as bytes, like the ABI's map, which `parse` does not check as UTF-8 either.
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Headers {
        let size = pairs
            .iter()
            .fold(4 + 8 * pairs.len(), |size, (name, value)| {
                size + name.as_ref().len() + value.as_ref().len() + 2
            });
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
        for (name, value) in pairs {
            bytes.extend_from_slice(&(name.as_ref().len() as u32).to_le_bytes());
            bytes.extend_from_slice(&(value.as_ref().len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            bytes.extend_from_slice(name.as_ref());
            bytes.push(0);
            bytes.extend_from_slice(value.as_ref());
            bytes.push(0);
        }
        Headers {
            bytes,
            count: pairs.len(),
        }
    }

    /// Every `(name, value)` pair as bytes, in the host's order. The map was checked by
    /// `parse`, so nothing is skipped here but what cannot happen. Names are not re-checked as
    /// UTF-8 here: lookups compare bytes, and a request scans its map several times (callgrind
    /// counted the re-checks at ~15 % of the filter's own instructions).
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut at = 4 + self.count * 8;
        (0..self.count).filter_map(move |index| {
            let entry = 4 + index * 8;
            let name_len = read_u32(&self.bytes, entry).ok()? as usize;
            let value_len = read_u32(&self.bytes, entry + 4).ok()? as usize;
            let (name, after_name) = read_string(&self.bytes, at, name_len).ok()?;
            let (value, after_value) = read_string(&self.bytes, after_name, value_len).ok()?;
            at = after_value;
            Some((name, value))
        })
    }

    /// Every `(name, value)` pair, in the host's order, names as text.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.iter_bytes()
            .filter_map(|(name, value)| Some((std::str::from_utf8(name).ok()?, value)))
    }

    /// The first value of header `name` (lower case, as the host gives names).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter_bytes()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Owned copies of every pair.
    pub fn to_pairs(&self) -> Vec<(String, Vec<u8>)> {
        self.iter()
            .map(|(name, value)| (name.to_string(), value.to_vec()))
            .collect()
    }
}

/// Reads a header map in the ABI's serialization into owned pairs (see [`Headers::parse`]).
pub fn decode_header_map(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, MapDecodeError> {
    Ok(Headers::parse(bytes.to_vec())?.to_pairs())
}

/// Writes `pairs` in the ABI's header-map serialization (see [`decode_header_map`]).
pub fn encode_header_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(name, value)| 8 + name.len() + value.len() + 2)
        .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// A property path as the ABI takes it: the segments joined by NUL.
pub fn encode_property_path(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

#[cfg(test)]
pub(super) mod sample {
    /// The SDK's own test map (`hostcalls::utils::tests::SERIALIZED_MAP`), written out by hand.
    #[rustfmt::skip]
    pub const SAMPLE_MAP: &[u8] = &[
        4, 0, 0, 0,
        7, 0, 0, 0, 3, 0, 0, 0,
        5, 0, 0, 0, 8, 0, 0, 0,
        10, 0, 0, 0, 11, 0, 0, 0,
        10, 0, 0, 0, 10, 0, 0, 0,
        b':', b'm', b'e', b't', b'h', b'o', b'd', 0,
        b'G', b'E', b'T', 0,
        b':', b'p', b'a', b't', b'h', 0,
        b'/', b'b', b'y', b't', b'e', b's', b'/', b'1', 0,
        b':', b'a', b'u', b't', b'h', b'o', b'r', b'i', b't', b'y', 0,
        b'h', b't', b't', b'p', b'b', b'i', b'n', b'.', b'o', b'r', b'g', 0,
        b'P', b'o', b'w', b'e', b'r', b'e', b'd', b'-', b'B', b'y', 0,
        b'p', b'r', b'o', b'x', b'y', b'-', b'w', b'a', b's', b'm', 0,
    ];

    pub fn sample_pairs() -> Vec<(String, Vec<u8>)> {
        [
            (":method", "GET"),
            (":path", "/bytes/1"),
            (":authority", "httpbin.org"),
            ("Powered-By", "proxy-wasm"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::sample::{sample_pairs, SAMPLE_MAP};
    use super::*;

    #[test]
    fn decodes_the_sdk_sample_map() {
        assert_eq!(decode_header_map(SAMPLE_MAP), Ok(sample_pairs()));
    }

    #[test]
    fn encode_matches_the_sdk_sample_map_and_round_trips() {
        let pairs = [
            (":method", "GET"),
            (":path", "/bytes/1"),
            (":authority", "httpbin.org"),
            ("Powered-By", "proxy-wasm"),
        ];
        assert_eq!(encode_header_map(&pairs), SAMPLE_MAP);
        assert_eq!(encode_header_map(&[]), [0, 0, 0, 0]);
        let with_empty = [("x-empty", ""), ("", "no name")];
        let decoded = decode_header_map(&encode_header_map(&with_empty)).unwrap();
        assert_eq!(
            decoded,
            vec![
                ("x-empty".to_string(), Vec::new()),
                (String::new(), b"no name".to_vec())
            ]
        );
    }

    #[test]
    fn reads_in_place_what_it_decodes() {
        let headers = Headers::parse(SAMPLE_MAP.to_vec()).unwrap();
        let pairs: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        assert_eq!(pairs, sample_pairs());
        assert_eq!(headers.get(":path"), Some(&b"/bytes/1"[..]));
        assert_eq!(headers.get("absent"), None);
        assert!(headers.contains("Powered-By"));
        let pairs = [
            (":method", "GET"),
            (":path", "/bytes/1"),
            (":authority", "httpbin.org"),
            ("Powered-By", "proxy-wasm"),
        ];
        assert_eq!(Headers::from_pairs(&pairs), headers);
    }

    #[test]
    fn decodes_empty_input_and_zero_pairs_as_an_empty_map() {
        assert_eq!(decode_header_map(&[]), Ok(Vec::new()));
        assert_eq!(decode_header_map(&[0, 0, 0, 0]), Ok(Vec::new()));
    }

    #[test]
    fn keeps_values_that_are_not_utf8() {
        let mut bytes = encode_header_map(&[("x-bin", "ab")]);
        let value_at = bytes.len() - 3;
        bytes[value_at] = 0xff;
        assert_eq!(
            decode_header_map(&bytes),
            Ok(vec![("x-bin".to_string(), vec![0xff, b'b'])])
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 1..SAMPLE_MAP.len() {
            assert!(
                decode_header_map(&SAMPLE_MAP[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
    }

    #[test]
    fn garbled_maps_are_errors() {
        let cases: [(&str, Vec<u8>, MapDecodeError); 9] = [
            ("short count", vec![1, 0], MapDecodeError::Truncated),
            (
                "huge count",
                vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
                MapDecodeError::Truncated,
            ),
            (
                "count without sizes",
                vec![2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0],
                MapDecodeError::Truncated,
            ),
            (
                "huge name size",
                vec![1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, b'a', 0, 0],
                MapDecodeError::Truncated,
            ),
            (
                "huge value size",
                vec![1, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, b'a', 0, 0],
                MapDecodeError::Truncated,
            ),
            (
                "name without NUL",
                vec![1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'a', b'b', b'c', 0],
                MapDecodeError::MissingNul,
            ),
            (
                "value without NUL",
                vec![1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'a', 0, b'b', b'c'],
                MapDecodeError::MissingNul,
            ),
            (
                "trailing bytes",
                vec![1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'a', 0, b'b', 0, 7],
                MapDecodeError::TrailingBytes,
            ),
            (
                "name not UTF-8",
                vec![1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0xff, 0, b'b', 0],
                MapDecodeError::NameNotUtf8,
            ),
        ];
        for (what, bytes, expected) in cases {
            assert_eq!(decode_header_map(&bytes), Err(expected), "{what}");
        }
    }

    #[test]
    fn no_single_byte_corruption_panics() {
        for at in 0..SAMPLE_MAP.len() {
            for byte in [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] {
                let mut bytes = SAMPLE_MAP.to_vec();
                bytes[at] = byte;
                if let Ok(pairs) = decode_header_map(&bytes) {
                    assert_eq!(pairs.len(), 4, "byte {at} set to {byte:#x}");
                }
            }
        }
    }

    #[test]
    fn property_paths_are_joined_by_nul() {
        assert_eq!(
            encode_property_path(&["source", "address"]),
            b"source\0address"
        );
        assert_eq!(encode_property_path(&["keygate_key_id"]), b"keygate_key_id");
        assert_eq!(encode_property_path(&[]), b"");
    }
}
