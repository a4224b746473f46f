//! Store SQL is written with SQLite's parameters (`?1`, `:name`); PostgreSQL numbers them
//! (`$1`). This rewrites one into the other, skipping string literals, quoted identifiers,
//! comments and PostgreSQL's `::` casts, so one statement text serves both backends.

/// Where each `$k` of the rewritten statement takes its value from.
#[derive(Debug, PartialEq, Eq)]
pub enum Slots {
    /// `?N` became `$N`: values bind in their given order.
    Positional,
    /// `:name` became `$k`, numbered by first appearance; `names[k-1]` is the name.
    Named(Vec<String>),
}

pub fn to_postgres(sql: &str) -> Result<(String, Slots), String> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut names: Vec<String> = Vec::new();
    let mut positional = false;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b'\'' | b'"' => {
                let end = closing_quote(bytes, i, byte);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                let end = sql[i..].find('\n').map_or(bytes.len(), |offset| i + offset);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b':' if bytes.get(i + 1) == Some(&b':') => {
                out.push_str("::");
                i += 2;
            }
            b':' if bytes.get(i + 1).is_some_and(|next| is_name_start(*next)) => {
                let end = name_end(bytes, i + 1);
                let name = &sql[i..end];
                let index = match names.iter().position(|known| known == name) {
                    Some(index) => index + 1,
                    None => {
                        names.push(name.to_string());
                        names.len()
                    }
                };
                out.push('$');
                out.push_str(&index.to_string());
                i = end;
            }
            b'?' => {
                let end = bytes[i + 1..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(bytes.len(), |offset| i + 1 + offset);
                if end == i + 1 {
                    return Err("bare `?` parameters are not supported: number them".into());
                }
                positional = true;
                out.push('$');
                out.push_str(&sql[i + 1..end]);
                i = end;
            }
            _ => {
                let next = next_boundary(sql, i);
                out.push_str(&sql[i..next]);
                i = next;
            }
        }
    }
    match (positional, names.is_empty()) {
        (true, false) => Err("a statement mixes `?N` and `:name` parameters".into()),
        (false, false) => Ok((out, Slots::Named(names))),
        _ => Ok((out, Slots::Positional)),
    }
}

fn is_name_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn name_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .map_or(bytes.len(), |offset| start + offset)
}

/// The index after the quote closing the one at `start`; a doubled quote is an escaped one.
fn closing_quote(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// The next character boundary after `i`, so multi-byte text is copied whole.
fn next_boundary(text: &str, i: usize) -> usize {
    let mut next = i + 1;
    while next < text.len() && !text.is_char_boundary(next) {
        next += 1;
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_named_parameters_by_first_appearance() {
        let (sql, slots) =
            to_postgres("SELECT 1 WHERE (:team IS NULL OR team = :team) AND seq > :after").unwrap();
        assert_eq!(sql, "SELECT 1 WHERE ($1 IS NULL OR team = $1) AND seq > $2");
        assert_eq!(slots, Slots::Named(vec![":team".into(), ":after".into()]));
    }

    #[test]
    fn positional_parameters_keep_their_numbers() {
        let (sql, slots) = to_postgres("UPDATE t SET a = ?2 WHERE b = ?1").unwrap();
        assert_eq!(sql, "UPDATE t SET a = $2 WHERE b = $1");
        assert_eq!(slots, Slots::Positional);
    }

    #[test]
    fn literals_comments_and_casts_are_left_alone() {
        let text = "SELECT ':no', \"?x\", 'it''s :x' -- :comment ?1\n, CAST(:at AS TEXT)::timestamptz, 'é'";
        let (sql, slots) = to_postgres(text).unwrap();
        assert_eq!(
            sql,
            "SELECT ':no', \"?x\", 'it''s :x' -- :comment ?1\n, CAST($1 AS TEXT)::timestamptz, 'é'"
        );
        assert_eq!(slots, Slots::Named(vec![":at".into()]));
    }

    #[test]
    fn refuses_what_it_cannot_map() {
        assert!(to_postgres("SELECT ?").is_err());
        assert!(to_postgres("SELECT ?1, :x").is_err());
    }
}
