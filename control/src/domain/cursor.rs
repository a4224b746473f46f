//! Pagination cursors: opaque to clients; inside, the position of the last row served.

const PREFIX: &str = "c";
const HASH_PREFIX: &str = "h";

/// Where a page ended: the row's version (delta pages are ordered by it) and sequence number.
/// Pages ordered by sequence number alone leave `version` at 0.
/// Ordered by version, then sequence number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub version: u64,
    pub seq: i64,
}

pub fn encode(position: Position) -> String {
    format!("{PREFIX}{:x}.{:x}", position.version, position.seq)
}

/// The position after which the next page starts, or `None` for a cursor we did not make.
pub fn decode(cursor: &str) -> Option<Position> {
    let (version, seq) = cursor.strip_prefix(PREFIX)?.split_once('.')?;
    let seq = hex_number(seq).and_then(|seq| i64::try_from(seq).ok())?;
    Some(Position {
        version: hex_number(version)?,
        seq,
    })
}

/// Where a page of a full snapshot in hash order ended (the compact encoding lists full
/// snapshots so): the snapshot's version, which every later page must be at or above (see
/// `full_snapshot.rs`), and the last hash served. Any replica can continue from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashPosition {
    pub version: u64,
    /// 64 lowercase hex digits.
    pub hash: String,
}

pub fn encode_hash(position: &HashPosition) -> String {
    format!("{HASH_PREFIX}{:x}.{}", position.version, position.hash)
}

/// The hash position a cursor names, or `None` for any other cursor.
pub fn decode_hash(cursor: &str) -> Option<HashPosition> {
    let (version, hash) = cursor.strip_prefix(HASH_PREFIX)?.split_once('.')?;
    keygate_contract::key_hash::parse_hex_digest(hash)?;
    Some(HashPosition {
        version: hex_number(version)?,
        hash: hash.to_string(),
    })
}

fn hex_number(text: &str) -> Option<u64> {
    let plain_hex =
        !text.is_empty() && text.len() <= 16 && text.bytes().all(|b| b.is_ascii_hexdigit());
    plain_hex
        .then(|| u64::from_str_radix(text, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (version, seq) in [
            (0, 0),
            (0, 1),
            (7, 255),
            (u64::MAX, 1_000_000),
            (1, i64::MAX),
        ] {
            let position = Position { version, seq };
            assert_eq!(decode(&encode(position)), Some(position));
        }
    }

    #[test]
    fn hash_positions_round_trip_and_are_no_row_cursor() {
        let position = HashPosition {
            version: 0x2a,
            hash: "0f".repeat(32),
        };
        let cursor = encode_hash(&position);
        assert_eq!(cursor, format!("h2a.{}", "0f".repeat(32)));
        assert_eq!(decode_hash(&cursor), Some(position));
        assert_eq!(decode(&cursor), None);
        assert_eq!(decode_hash("c1.1"), None);
        for foreign in ["h1.", "h.aa", &format!("h1.{}", "0F".repeat(32)), "h1.00"] {
            assert_eq!(decode_hash(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn rejects_foreign_cursors() {
        let foreign = [
            "",
            "c",
            "c1",
            "c.1",
            "c1.",
            "x1.10",
            "c-1.1",
            "c1.+1",
            "c1.zz",
            "c1.8000000000000000",
            "c10000000000000000.1",
            "1.1",
        ];
        for cursor in foreign {
            assert_eq!(decode(cursor), None, "{cursor:?}");
        }
    }
}
