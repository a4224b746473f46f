//! Which encoding an answer gets, from its request's `Accept` header: a binary one (the
//! snapshot's `keygate_contract::compact`, the fleet sync's `keygate_contract::fleet::binary`)
//! when the client names it and wants it at least as much as JSON; JSON otherwise: without an
//! `Accept`, or with only wildcards, so plain clients and older filters are unchanged.

use keygate_contract::compact::MEDIA_TYPE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Compact,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Compact => MEDIA_TYPE,
        }
    }
}

/// The quality the `Accept` header gives `media_type` and how specific the range that gave it
/// is: the most specific range that matches (3 `type/subtype`, 2 `type/*`, 1 `*/*`); `None`
/// when none does.
fn quality(accept: &str, media_type: &str) -> Option<(u8, f32)> {
    let kind = media_type.split('/').next().unwrap_or_default();
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let specificity = if name == media_type {
            3
        } else if name.strip_suffix("/*") == Some(kind) {
            2
        } else if name == "*/*" {
            1
        } else {
            continue;
        };
        let q = parts
            .filter_map(|parameter| parameter.trim().strip_prefix("q="))
            .find_map(|value| value.trim().parse::<f32>().ok())
            .filter(|q| (0.0..=1.0).contains(q))
            .unwrap_or(1.0);
        if best.is_none_or(|(known, _)| specificity > known) {
            best = Some((specificity, q));
        }
    }
    best
}

/// The snapshot encoding for a request with this `Accept` header (`None`: no header).
pub fn negotiate(accept: Option<&str>) -> Encoding {
    if prefers(accept, MEDIA_TYPE) {
        Encoding::Compact
    } else {
        Encoding::Json
    }
}

/// Whether this `Accept` header (`None`: no header) names `binary_type` itself and wants it at
/// least as much as JSON.
pub fn prefers(accept: Option<&str>, binary_type: &str) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let binary = match quality(accept, binary_type) {
        Some((3, q)) => q,
        _ => 0.0,
    };
    let json = quality(accept, "application/json").map_or(0.0, |(_, q)| q);
    binary > 0.0 && binary >= json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_table() {
        let cases = [
            (None, Encoding::Json),
            (Some("application/json"), Encoding::Json),
            (Some("*/*"), Encoding::Json),
            (Some(""), Encoding::Json),
            (Some(MEDIA_TYPE), Encoding::Compact),
            (
                Some("application/vnd.keygate.snapshot+binary, application/json;q=0.5"),
                Encoding::Compact,
            ),
            (
                Some("application/json, application/vnd.keygate.snapshot+binary;q=0.5"),
                Encoding::Json,
            ),
            (
                Some("application/vnd.keygate.snapshot+binary;q=0, */*"),
                Encoding::Json,
            ),
            (
                Some("Application/VND.Keygate.Snapshot+Binary ; q=0.9, application/*;q=0.2"),
                Encoding::Compact,
            ),
            (Some("application/*"), Encoding::Json),
            (Some("text/html"), Encoding::Json),
        ];
        for (accept, expected) in cases {
            assert_eq!(negotiate(accept), expected, "{accept:?}");
        }
    }

    #[test]
    fn each_binary_type_is_asked_for_by_name() {
        use keygate_contract::fleet::binary;
        assert!(prefers(Some(binary::ACCEPT), binary::MEDIA_TYPE));
        assert!(!prefers(Some(binary::ACCEPT), MEDIA_TYPE));
        assert!(!prefers(Some(SNAPSHOT_ACCEPT), binary::MEDIA_TYPE));
        assert!(!prefers(None, binary::MEDIA_TYPE));
        assert!(!prefers(Some("*/*"), binary::MEDIA_TYPE));
    }

    const SNAPSHOT_ACCEPT: &str = "application/vnd.keygate.snapshot+binary, application/json;q=0.5";
}
