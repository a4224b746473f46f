//! The rate-limit response headers: `X-RateLimit-*` for the tightest window (least remaining)
//! and the IETF `RateLimit-Policy` / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers).
//!
//! On the request path nothing here touches the heap: the policy field depends only on a key's
//! limits and the configured windows, so each worker keeps the few distinct ones (one per plan,
//! in practice) in `PolicyCache`, and the per-request numbers are formatted into stack buffers
//! when the headers are written.

use std::cell::RefCell;
use std::fmt::Write;
use std::rc::Rc;

use crate::limits::stack_text::StackText;
use crate::limits::window::{ceil_seconds, Usage, WindowUsage, Windows, WINDOW_NAMES};

/// What an admitted request's response carries, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateHeaders {
    window: usize,
    usage: WindowUsage,
    policy: Rc<str>,
}

/// Seconds until one more request is available in the tightest window (0 when none is used).
fn reset_seconds(usage: &WindowUsage) -> u64 {
    if usage.remaining == usage.limit {
        0
    } else {
        ceil_seconds(usage.reset_ms)
    }
}

impl RateHeaders {
    /// The headers for `usage`; `None` when no window is limited.
    pub fn new(usage: &Usage, policies: &PolicyCache, windows: &Windows) -> Option<RateHeaders> {
        let (window, tightest) = usage.tightest()?;
        Some(RateHeaders {
            window,
            usage: tightest,
            policy: policies.policy(usage, windows),
        })
    }

    /// Calls `set(name, value)` for each header, in a fixed order.
    pub fn write(&self, mut set: impl FnMut(&'static str, &str)) {
        let reset = reset_seconds(&self.usage);
        let mut number = StackText::<20>::new();
        for (name, value) in [
            ("x-ratelimit-limit", self.usage.limit),
            ("x-ratelimit-remaining", self.usage.remaining),
            ("x-ratelimit-reset", reset),
        ] {
            number.clear();
            number.decimal(value);
            set(name, number.as_str());
        }
        set("ratelimit-policy", &self.policy);
        let mut field = StackText::<64>::new();
        for part in ["\"", WINDOW_NAMES[self.window], "\";r="] {
            field.push(part);
        }
        field.decimal(self.usage.remaining);
        field.push(";t=");
        field.decimal(reset);
        set("ratelimit", field.as_str());
    }

    /// The headers as owned pairs, for a refusal's reply.
    pub fn to_vec(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(5);
        self.write(|name, value| headers.push((name, value.to_string())));
        headers
    }
}

/// The `RateLimit-Policy` field of a set of window limits.
fn policy_field(limits: &[Option<u64>; 3], windows: &Windows) -> String {
    let mut field = String::new();
    for (window, limit) in limits.iter().enumerate() {
        let Some(limit) = limit else { continue };
        if !field.is_empty() {
            field.push_str(", ");
        }
        let _ = write!(
            field,
            "\"{}\";q={limit};w={}",
            WINDOW_NAMES[window],
            windows.lengths_ms[window].div_ceil(1000)
        );
    }
    field
}

const POLICY_CACHE_SIZE: usize = 64;

/// Window limits and their `RateLimit-Policy` field.
type PolicyEntry = ([Option<u64>; 3], Rc<str>);

/// A worker's `RateLimit-Policy` fields by window limits: direct-mapped, so a lookup is one
/// hash and one comparison, and a key with unusual limits only costs its own rebuild.
pub struct PolicyCache {
    entries: RefCell<[Option<PolicyEntry>; POLICY_CACHE_SIZE]>,
}

impl Default for PolicyCache {
    fn default() -> PolicyCache {
        PolicyCache {
            entries: RefCell::new(std::array::from_fn(|_| None)),
        }
    }
}

impl PolicyCache {
    fn policy(&self, usage: &Usage, windows: &Windows) -> Rc<str> {
        let limits = usage.windows.map(|window| window.map(|w| w.limit));
        let slot = limits
            .iter()
            .fold(0x9E37_79B9_7F4A_7C15_u64, |hash, limit| {
                (hash ^ limit.map_or(u64::MAX, |l| l)).wrapping_mul(0x0100_0000_01B3)
            })
            .wrapping_shr(58) as usize
            % POLICY_CACHE_SIZE;
        let mut entries = self.entries.borrow_mut();
        match entries.get_mut(slot) {
            Some(Some((cached, policy))) if *cached == limits => Rc::clone(policy),
            Some(entry) => {
                let policy: Rc<str> = policy_field(&limits, windows).into();
                *entry = Some((limits, Rc::clone(&policy)));
                policy
            }
            None => policy_field(&limits, windows).into(),
        }
    }
}

/// The headers for `usage`, as owned pairs (refusals, and callers without a cache).
pub fn headers(usage: &Usage, windows: &Windows) -> Vec<(&'static str, String)> {
    RateHeaders::new(usage, &PolicyCache::default(), windows)
        .map(|headers| headers.to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(windows: [Option<(u64, u64, u64)>; 3]) -> Usage {
        Usage {
            windows: windows.map(|w| {
                w.map(|(limit, remaining, reset_ms)| WindowUsage {
                    limit,
                    remaining,
                    reset_ms,
                })
            }),
        }
    }

    #[test]
    fn the_tightest_window_and_every_policy() {
        let usage = usage([Some((100, 99, 1_500)), None, Some((2, 0, 7_200_001))]);
        assert_eq!(
            headers(&usage, &Windows::default()),
            vec![
                ("x-ratelimit-limit", "2".to_string()),
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", "7201".into()),
                (
                    "ratelimit-policy",
                    "\"minute\";q=100;w=60, \"day\";q=2;w=86400".into()
                ),
                ("ratelimit", "\"day\";r=0;t=7201".into()),
            ]
        );
    }

    #[test]
    fn nothing_used_resets_at_zero_and_no_limits_means_no_headers() {
        let fresh = usage([Some((60, 60, 0)), None, None]);
        let written = headers(&fresh, &Windows::default());
        assert!(written.contains(&("x-ratelimit-reset", "0".into())));
        assert!(written.contains(&("ratelimit", "\"minute\";r=60;t=0".into())));
        assert!(headers(&Usage::default(), &Windows::default()).is_empty());
    }

    #[test]
    fn the_cache_returns_each_limits_own_policy() {
        let cache = PolicyCache::default();
        let windows = Windows::default();
        let mut seen = Vec::new();
        for minute in 1..500u64 {
            let usage = usage([Some((minute, minute, 0)), None, Some((9, 9, 0))]);
            let first = RateHeaders::new(&usage, &cache, &windows).unwrap();
            let again = RateHeaders::new(&usage, &cache, &windows).unwrap();
            assert_eq!(first.policy, again.policy);
            assert_eq!(
                &*first.policy,
                format!("\"minute\";q={minute};w=60, \"day\";q=9;w=86400")
            );
            seen.push(first.policy);
        }
        let usage = usage([Some((1, 1, 0)), None, Some((9, 9, 0))]);
        let policy = RateHeaders::new(&usage, &cache, &windows).unwrap().policy;
        assert_eq!(&*policy, "\"minute\";q=1;w=60, \"day\";q=9;w=86400");
    }

    #[test]
    fn the_largest_numbers_fit_the_buffers() {
        let huge = usage([None, Some((u64::MAX, u64::MAX - 1, u64::MAX)), None]);
        let written = headers(&huge, &Windows::default());
        assert!(written.contains(&("x-ratelimit-limit", u64::MAX.to_string())));
        assert!(written.contains(&(
            "ratelimit",
            format!("\"hour\";r={};t={}", u64::MAX - 1, u64::MAX.div_ceil(1000))
        )));
    }
}
