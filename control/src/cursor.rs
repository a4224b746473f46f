//! Pagination cursors: opaque to clients, the row sequence number of the last row served.

const PREFIX: &str = "c";

pub fn encode(last_seq: i64) -> String {
    format!("{PREFIX}{last_seq:x}")
}

/// The sequence number after which the next page starts, or `None` for a cursor we did not make.
pub fn decode(cursor: &str) -> Option<i64> {
    let hex = cursor.strip_prefix(PREFIX)?;
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    i64::from_str_radix(hex, 16).ok().filter(|seq| *seq >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for seq in [0, 1, 255, 1_000_000, i64::MAX] {
            assert_eq!(decode(&encode(seq)), Some(seq));
        }
    }

    #[test]
    fn rejects_foreign_cursors() {
        for cursor in [
            "",
            "c",
            "x10",
            "c-1",
            "c+1",
            "czz",
            "c10000000000000000",
            "10",
        ] {
            assert_eq!(decode(cursor), None, "{cursor:?}");
        }
    }
}
