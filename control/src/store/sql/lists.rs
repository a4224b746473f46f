//! Lists bound one parameter per element (`IN (?2, ?3, …)`, multi-row `VALUES`), in chunks that
//! keep each statement inside both backends' parameter limits.

/// Elements bound per statement at most.
pub const LIST_CHUNK: usize = 500;

/// `?first, ?first+1, …` for `count` parameters, to put inside `IN (…)`.
pub fn slots(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("?{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(?1, ?2), (?3, ?4), …`: `rows` tuples of `width` parameters each, for a multi-row
/// `INSERT … VALUES` whose values are bound row after row.
pub fn value_rows(width: usize, rows: usize) -> String {
    (0..rows)
        .map(|row| format!("({})", slots(row * width + 1, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_rows_number_row_after_row() {
        assert_eq!(value_rows(2, 2), "(?1, ?2), (?3, ?4)");
        assert_eq!(value_rows(3, 1), "(?1, ?2, ?3)");
    }

    #[test]
    fn slots_number_from_the_first() {
        assert_eq!(slots(2, 3), "?2, ?3, ?4");
        assert_eq!(slots(1, 1), "?1");
    }
}
