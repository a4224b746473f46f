//! Lists bound one parameter per element (`IN (?2, ?3, …)`), in chunks that keep each statement
//! inside both backends' parameter limits.

/// Elements bound per statement at most.
pub const LIST_CHUNK: usize = 500;

/// `?first, ?first+1, …` for `count` parameters, to put inside `IN (…)`.
pub fn slots(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("?{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_number_from_the_first() {
        assert_eq!(slots(2, 3), "?2, ?3, ?4");
        assert_eq!(slots(1, 1), "?1");
    }
}
