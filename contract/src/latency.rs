//! Request durations as a fixed-bucket histogram that merges by adding counts: the filter puts
//! each allowed request's duration (whole milliseconds) into a bucket, usage reports carry the
//! non-empty buckets by index, and the control service sums them across proxies, hours and keys
//! and reads percentiles back. One definition here, so both sides agree on every bucket.
//!
//! The buckets are log-linear (HdrHistogram's layout with 8 sub-buckets per power of two):
//! 0–15 ms one bucket per millisecond (exact), then each doubling `[2^e, 2^(e+1))` split into 8
//! equal buckets. A bucket's middle is within 1/16 (6.25 %) of any duration in it. The last
//! bucket starts at 983,040 ms (16.4 min) and holds everything longer; 10 minutes is covered
//! with the error above. The index is computed with a shift and a count of leading zeros: no
//! floating point, so it is the same on every platform and costs a few instructions.

/// Buckets below this are one millisecond wide (and exact).
const LINEAR: u64 = 16;
/// Sub-buckets per power of two, as a shift.
const SUB_BITS: u32 = 3;
/// The number of buckets: 16 exact ones and 8 for each doubling from 16 ms to 2^20 ms.
pub const BUCKETS: usize = 16 + 16 * 8;

/// The bucket a duration of `ms` milliseconds falls in.
pub fn bucket_of(ms: u64) -> usize {
    if ms < LINEAR {
        return ms as usize;
    }
    let exponent = 63 - ms.leading_zeros(); // ≥ 4
    let sub = (ms >> (exponent - SUB_BITS)) & 7;
    let index = LINEAR as usize + (exponent as usize - 4) * 8 + sub as usize;
    index.min(BUCKETS - 1)
}

/// The first millisecond of bucket `index` and its width (the last bucket's width is that of
/// its doubling, though it holds everything above).
pub fn bounds(index: usize) -> (u64, u64) {
    if index < LINEAR as usize {
        return (index as u64, 1);
    }
    let index = index.min(BUCKETS - 1) - LINEAR as usize;
    let exponent = (index / 8) as u32 + 4;
    let sub = (index % 8) as u64;
    let width = 1u64 << (exponent - SUB_BITS);
    ((8 + sub) * width, width)
}

/// The value a bucket stands for: its middle (the exact value for the 1 ms wide ones).
pub fn representative_ms(index: usize) -> f64 {
    let (low, width) = bounds(index);
    if width == 1 {
        low as f64
    } else {
        low as f64 + width as f64 / 2.0
    }
}

/// The `quantile` (0 < q ≤ 1) of the samples in `counts` (bucket index → count), as the
/// representative value of the bucket holding the sample of rank ⌈q·n⌉; `None` without samples.
/// Indices at or above [`BUCKETS`] count in the last bucket.
pub fn quantile<'a>(
    counts: impl IntoIterator<Item = (&'a usize, &'a u64)> + Clone,
    quantile: f64,
) -> Option<f64> {
    let total: u64 = counts
        .clone()
        .into_iter()
        .fold(0u64, |sum, (_, count)| sum.saturating_add(*count));
    if total == 0 {
        return None;
    }
    let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
    let mut sorted: Vec<(usize, u64)> = counts
        .into_iter()
        .map(|(index, count)| ((*index).min(BUCKETS - 1), *count))
        .collect();
    sorted.sort_unstable();
    let mut seen = 0u64;
    for (index, count) in sorted {
        seen = seen.saturating_add(count);
        if seen >= rank {
            return Some(representative_ms(index));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn every_duration_is_within_a_sixteenth_of_its_bucket_middle() {
        let mut ms = 0u64;
        while ms <= 600_000 {
            let index = bucket_of(ms);
            let (low, width) = bounds(index);
            assert!(low <= ms && ms < low + width, "{ms} not in bucket {index}");
            let error = (representative_ms(index) - ms as f64).abs();
            assert!(error <= ms as f64 / 16.0, "{ms}: middle off by {error}");
            ms += 1 + ms / 97;
        }
    }

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        for index in 1..BUCKETS {
            let (low, _) = bounds(index);
            let (previous_low, previous_width) = bounds(index - 1);
            assert_eq!(previous_low + previous_width, low, "gap before {index}");
            assert_eq!(bucket_of(low), index);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(10 * 60 * 1000), 137);
    }

    #[test]
    fn quantiles_read_merged_counts() {
        let mut counts = BTreeMap::new();
        for ms in [3u64; 90] {
            *counts.entry(bucket_of(ms)).or_insert(0u64) += 1;
        }
        for _ in 0..10 {
            *counts.entry(bucket_of(300)).or_insert(0u64) += 1;
        }
        assert_eq!(quantile(&counts, 0.5), Some(3.0));
        assert_eq!(quantile(&counts, 0.9), Some(3.0));
        let p95 = quantile(&counts, 0.95).unwrap();
        assert!((p95 - 300.0).abs() <= 300.0 / 16.0, "{p95}");
        assert_eq!(quantile(&BTreeMap::new(), 0.5), None);
    }
}
