//! The snapshot feed's versioning rules, as pure functions: which kind of page a request gets,
//! its ETag, and when the answer is "not modified"; and the count of long polls held.
//!
//! What the feed guarantees, and the cached full snapshot (`full_snapshot.rs`) relies on: for
//! as long as a database lasts, a delta since any version of its epoch can be served. Key rows
//! are never removed (a deleted key stays as a tombstone with the version of its deletion) and
//! the epoch is made once with the database, so `page_kind` answers a delta for every version
//! up to the current one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Default and maximum keys per snapshot page.
pub const DEFAULT_PAGE_SIZE: usize = 10_000;
pub const MAX_PAGE_SIZE: usize = 50_000;
/// Longest a long poll may hold a request.
pub const MAX_WAIT_SECONDS: u64 = 60;

/// What a snapshot page contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// Every live key.
    Full,
    /// Keys and tombstones changed after this version.
    Delta { since: u64 },
}

/// A delta only when the client's versions are ours (same epoch) and not from the future;
/// anything else gets a full snapshot to start over from.
pub fn page_kind(
    current_epoch: &str,
    current_version: u64,
    client_epoch: Option<&str>,
    since: Option<u64>,
) -> PageKind {
    match (client_epoch, since) {
        (Some(epoch), Some(since)) if epoch == current_epoch && since <= current_version => {
            PageKind::Delta { since }
        }
        _ => PageKind::Full,
    }
}

/// The quoted entity tag of a version: `"<epoch>-<version>"`.
pub fn etag(epoch: &str, version: u64) -> String {
    format!("\"{epoch}-{version}\"")
}

/// Whether an `If-None-Match` value names this tag (a list, weak tags and `*` allowed).
pub fn if_none_match_hits(header: &str, tag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == tag
    })
}

/// Whether the first page would tell the client nothing new.
pub fn is_not_modified(
    kind: PageKind,
    current_version: u64,
    if_none_match: Option<&str>,
    current_etag: &str,
) -> bool {
    let delta_is_empty = kind
        == PageKind::Delta {
            since: current_version,
        };
    delta_is_empty || if_none_match.is_some_and(|header| if_none_match_hits(header, current_etag))
}

/// How many long polls are held right now, waiting for the version to move.
#[derive(Debug, Clone, Default)]
pub struct HeldPolls(Arc<AtomicUsize>);

impl HeldPolls {
    /// Counts one more held poll until the returned guard is dropped: on an answer, a timeout,
    /// shutdown, or the request future being dropped when its client goes away.
    pub fn hold(&self) -> HeldPoll {
        self.0.fetch_add(1, Ordering::SeqCst);
        HeldPoll(Arc::clone(&self.0))
    }

    /// The number of polls held now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One held long poll; dropping it takes it off the count.
#[derive(Debug)]
pub struct HeldPoll(Arc<AtomicUsize>);

impl Drop for HeldPoll {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_polls_count_until_their_guards_drop() {
        let polls = HeldPolls::default();
        assert_eq!(polls.count(), 0);
        let first = polls.hold();
        let second = polls.clone().hold();
        assert_eq!(polls.count(), 2);
        drop(first);
        assert_eq!(polls.count(), 1);
        drop(second);
        assert_eq!(polls.count(), 0);
    }

    #[tokio::test]
    async fn a_dropped_waiting_future_releases_its_poll() {
        let polls = HeldPolls::default();
        let (_sender, mut receiver) = tokio::sync::watch::channel(0_u64);
        let held = polls.clone();
        let waiting = tokio::spawn(async move {
            let _poll = held.hold();
            let _ = receiver.changed().await;
        });
        for _ in 0..1000 {
            if polls.count() == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(polls.count(), 1);
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        assert_eq!(polls.count(), 0);
    }

    #[test]
    fn page_kind_table() {
        let cases = [
            (Some("e1"), Some(3), PageKind::Delta { since: 3 }),
            (Some("e1"), Some(5), PageKind::Delta { since: 5 }),
            (Some("e1"), Some(0), PageKind::Delta { since: 0 }),
            (Some("e1"), Some(6), PageKind::Full),
            (Some("other"), Some(3), PageKind::Full),
            (None, Some(3), PageKind::Full),
            (Some("e1"), None, PageKind::Full),
            (None, None, PageKind::Full),
        ];
        for (epoch, since, expected) in cases {
            assert_eq!(
                page_kind("e1", 5, epoch, since),
                expected,
                "{epoch:?} {since:?}"
            );
        }
    }

    #[test]
    fn etags_and_if_none_match() {
        let tag = etag("e1", 7);
        assert_eq!(tag, "\"e1-7\"");
        assert!(if_none_match_hits("\"e1-7\"", &tag));
        assert!(if_none_match_hits("\"x\", W/\"e1-7\"", &tag));
        assert!(if_none_match_hits("*", &tag));
        assert!(!if_none_match_hits("\"e1-6\"", &tag));
        assert!(!if_none_match_hits("e1-7", &tag));
    }

    #[test]
    fn not_modified_when_nothing_is_newer() {
        let tag = etag("e1", 5);
        assert!(is_not_modified(PageKind::Delta { since: 5 }, 5, None, &tag));
        assert!(!is_not_modified(
            PageKind::Delta { since: 4 },
            5,
            None,
            &tag
        ));
        assert!(!is_not_modified(PageKind::Full, 5, None, &tag));
        assert!(is_not_modified(PageKind::Full, 5, Some("\"e1-5\""), &tag));
        assert!(!is_not_modified(PageKind::Full, 5, Some("\"e1-4\""), &tag));
    }
}
