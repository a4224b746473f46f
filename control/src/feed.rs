//! The snapshot feed's versioning rules, as pure functions: which kind of page a request gets,
//! its ETag, and when the answer is "not modified".

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

#[cfg(test)]
mod tests {
    use super::*;

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
