//! Which buckets of a sync are still of use: per window, the newest bucket, how many buckets the
//! window spans, and below which bucket counts are forgotten.

use keygate_contract::fleet::{FleetSyncPost, WINDOWS};

/// The post's view of time, per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Width of one bucket, as the post numbers them.
    pub bucket_ms: [u64; WINDOWS],
    /// Buckets a window spans (`window_ms / bucket_ms`, rounded up; 1 to 64 once validated).
    pub span: [u64; WINDOWS],
    /// The newest bucket: the newest the post counted in, or the control service's clock when
    /// the post counted nothing in that window (the Envoy's clock defines its buckets).
    pub current: [u64; WINDOWS],
    /// Counts of buckets below this are forgotten: one window plus one bucket of slack behind
    /// the older of the post's newest bucket and the control service's clock, so an Envoy whose
    /// clock runs ahead cannot make the fleet forget counts the others still hold.
    pub forget_below: [u64; WINDOWS],
}

impl Frame {
    /// The frame of a validated `post` received at `now_ms` (control service clock).
    pub fn of(post: &FleetSyncPost, now_ms: u64) -> Frame {
        let mut frame = Frame {
            bucket_ms: post.bucket_ms,
            span: [1; WINDOWS],
            current: [0; WINDOWS],
            forget_below: [0; WINDOWS],
        };
        for window in 0..WINDOWS {
            let bucket_ms = post.bucket_ms[window].max(1);
            let span = post.window_ms[window].div_ceil(bucket_ms).max(1);
            let clock = now_ms / bucket_ms;
            let newest = post
                .keys
                .iter()
                .flat_map(|key| key.counts[window].iter().map(|&(bucket, _)| bucket))
                .max();
            let current = newest.unwrap_or(clock);
            frame.span[window] = span;
            frame.current[window] = current;
            frame.forget_below[window] = current.min(clock).saturating_sub(span);
        }
        frame
    }

    /// The oldest bucket still inside window `window`: `span` buckets up to `current`.
    pub fn oldest_inside(&self, window: usize) -> u64 {
        (self.current[window] + 1).saturating_sub(self.span[window])
    }

    /// Whether `bucket` of `window` is inside the window (a peer's clock may run a little
    /// ahead: up to one window past `current` still counts).
    pub fn inside(&self, window: usize, bucket: u64) -> bool {
        bucket >= self.oldest_inside(window)
            && bucket <= self.current[window].saturating_add(self.span[window])
    }

    /// Whether a count of `bucket` is worth keeping.
    pub fn kept(&self, window: usize, bucket: u64) -> bool {
        bucket >= self.forget_below[window]
            && bucket <= self.current[window].saturating_add(self.span[window])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_contract::fleet::KeyCounts;

    fn post(counts: [Vec<(u64, u64)>; WINDOWS]) -> FleetSyncPost {
        FleetSyncPost {
            proxy_id: "envoy-a".into(),
            bucket_ms: [2_000, 120_000, 3_600_000],
            window_ms: [60_000, 3_600_000, 86_400_000],
            keys: vec![KeyCounts {
                key: "0".repeat(32),
                limits: [Some(10), None, None],
                counts,
            }],
        }
    }

    #[test]
    fn the_posts_buckets_set_the_time_and_the_clock_fills_in() {
        let now_ms = 1_000_000_000;
        let frame = Frame::of(
            &post([vec![(499_990, 1), (499_995, 2)], vec![], vec![]]),
            now_ms,
        );
        assert_eq!(frame.span, [30, 30, 24]);
        assert_eq!(frame.current[0], 499_995, "the Envoy's newest bucket");
        assert_eq!(
            frame.current[1],
            now_ms / 120_000,
            "nothing posted: the clock"
        );
        assert_eq!(frame.oldest_inside(0), 499_966);
        assert!(frame.inside(0, 499_966) && !frame.inside(0, 499_965));
        // The clock (bucket 500,000) runs ahead of the Envoy: the Envoy's time decides.
        assert_eq!(frame.forget_below[0], 499_965);
        assert!(frame.kept(0, 499_965) && !frame.kept(0, 499_964));
    }

    #[test]
    fn an_envoy_ahead_of_the_clock_cannot_make_the_fleet_forget() {
        let now_ms = 1_000_000_000;
        let frame = Frame::of(&post([vec![(600_000, 1)], vec![], vec![]]), now_ms);
        assert_eq!(frame.current[0], 600_000);
        assert_eq!(
            frame.forget_below[0],
            500_000 - 30,
            "the clock's bucket decides"
        );
        assert!(!frame.inside(0, 600_031), "more than a window ahead");
    }
}
