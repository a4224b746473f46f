//! Rules for the fields of a key record. Each returns a `FieldError` naming the field, so the
//! control service can answer 400 with it and the filter can log it by key id.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::timefmt::parse_rfc3339;

/// Names, teams, ids, prefixes and environments: at most this many characters (so at most
/// four times as many bytes, which the stored-key codec holds).
pub const MAX_LABEL_CHARS: usize = 128;
/// A scope: 1 to this many characters of `A-Z a-z 0-9 _ - . :`.
pub const MAX_SCOPE_CHARS: usize = 128;
/// Scopes, and allowlist entries, one key may have (the codec stores 16-bit counts).
pub const MAX_ENTRIES: usize = u16::MAX as usize;
/// The largest limit a key may have (the control service's databases hold signed 64 bits).
pub const MAX_LIMIT: u64 = i64::MAX as u64;
/// A snapshot epoch goes into a URL and an `If-None-Match` header: at most this many
/// characters of `A-Z a-z 0-9 _ - .`.
pub const MAX_EPOCH_CHARS: usize = 64;

/// A field that failed validation and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error for a field nested under `parent` (`keys[3]` + `name` → `keys[3].name`).
    pub fn within(self, parent: &str) -> FieldError {
        FieldError {
            field: format!("{parent}.{}", self.field),
            message: self.message,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Characters that change how text is shown without being seen: bidirectional embeddings,
/// overrides and isolates (U+202A–U+202E, U+2066–U+2069), marks and zero-width characters, the
/// byte-order mark, soft hyphen, interlinear annotations and tag characters. In a name they let
/// one key be listed as another.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// A label the filter stores and may forward in a header: at most `MAX_LABEL_CHARS`
/// characters, no control characters (a newline would split a header or a log line).
pub fn label(field: &str, text: &str) -> Result<(), FieldError> {
    if text.chars().count() > MAX_LABEL_CHARS {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_LABEL_CHARS} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A label people read in listings (a key's name and team): a `label` without invisible
/// formatting characters either, so no listing can show one name as another. Checked when a
/// name is written; the filter, which never shows names, reads them with `label`.
pub fn display_label(field: &str, text: &str) -> Result<(), FieldError> {
    label(field, text)?;
    if let Some(c) = text.chars().find(|c| is_invisible_format(*c)) {
        return Err(FieldError::new(
            field,
            format!(
                "must not contain invisible formatting characters (found U+{:04X})",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// A non-empty `label`.
pub fn identifier(field: &str, text: &str) -> Result<(), FieldError> {
    if text.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    label(field, text)
}

/// A scope name: 1 to `MAX_SCOPE_CHARS` of `A-Z a-z 0-9 _ - . :` (scopes travel
/// comma-separated in a header, so no commas or spaces).
pub fn scope(field: &str, scope: &str) -> Result<(), FieldError> {
    let plain = scope
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if scope.is_empty() || scope.len() > MAX_SCOPE_CHARS || !plain {
        return Err(FieldError::new(
            field,
            format!("invalid scope {scope:?}: 1 to {MAX_SCOPE_CHARS} of A-Z a-z 0-9 _ - . :"),
        ));
    }
    Ok(())
}

/// A key's scopes: each a `scope`, none twice, at most `MAX_ENTRIES`.
pub fn scopes(field: &str, scopes: &[String]) -> Result<(), FieldError> {
    if scopes.len() > MAX_ENTRIES {
        return Err(FieldError::new(
            field,
            format!("must hold at most {MAX_ENTRIES} scopes"),
        ));
    }
    let mut seen = HashSet::with_capacity(scopes.len());
    for (index, name) in scopes.iter().enumerate() {
        let at = format!("{field}[{index}]");
        scope(&at, name)?;
        if !seen.insert(name.as_str()) {
            return Err(FieldError::new(at, format!("duplicate scope {name:?}")));
        }
    }
    Ok(())
}

/// An IP address in the form the filter matches: IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is the
/// IPv4 address it carries, so an entry or a client written either way means one address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One allowlist entry (an IP or a CIDR) in canonical form: host bits cleared
/// (`10.0.0.1/8` → `10.0.0.0/8`) and IPv4-mapped IPv6 networks of prefix 96 or longer written
/// as the IPv4 network they cover (`::ffff:10.0.0.0/104` → `10.0.0.0/8`).
pub fn allowlist_entry(entry: &str) -> Option<IpNet> {
    let net = match entry.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => IpNet::from(entry.parse::<IpAddr>().ok()?),
    };
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(prefix)) = (
            v6.network().to_ipv4_mapped(),
            v6.prefix_len().checked_sub(96),
        ) {
            return ipnet::Ipv4Net::new(v4, prefix).ok().map(IpNet::V4);
        }
    }
    Some(net)
}

/// How a canonical entry is written back: a single address bare (`10.0.0.1`), a network as a
/// CIDR (`10.0.0.0/8`).
pub fn allowlist_text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// What to do with two entries of an allowlist that mean the same network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicates {
    /// Writing a key: refuse, so what is stored is what was meant.
    Refuse,
    /// Reading a snapshot: keep one; a repeat changes nothing the filter decides.
    Merge,
}

/// A key's allowlist in canonical form, in the order given.
pub fn allowlist(
    field: &str,
    entries: &[String],
    duplicates: Duplicates,
) -> Result<Vec<IpNet>, FieldError> {
    if entries.len() > MAX_ENTRIES {
        return Err(FieldError::new(
            field,
            format!("must hold at most {MAX_ENTRIES} entries"),
        ));
    }
    let mut nets: Vec<IpNet> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let at = format!("{field}[{index}]");
        let net = allowlist_entry(entry)
            .ok_or_else(|| FieldError::new(&at, format!("invalid IP or CIDR {entry:?}")))?;
        if nets.contains(&net) {
            match duplicates {
                Duplicates::Refuse => {
                    return Err(FieldError::new(
                        at,
                        format!("{entry:?} is the same network as an earlier entry ({net})"),
                    ))
                }
                Duplicates::Merge => continue,
            }
        }
        nets.push(net);
    }
    Ok(nets)
}

/// An optional RFC 3339 instant, in Unix seconds.
pub fn instant(field: &str, text: Option<&str>) -> Result<Option<i64>, FieldError> {
    text.map(|text| {
        parse_rfc3339(text)
            .ok_or_else(|| FieldError::new(field, format!("{text:?} is not RFC 3339")))
    })
    .transpose()
}

/// A request limit: a positive integer up to `MAX_LIMIT` (`None`, unlimited, is always fine).
pub fn limit(field: &str, value: Option<u64>) -> Result<(), FieldError> {
    match value {
        Some(0) => Err(FieldError::new(field, "must be a positive integer or null")),
        Some(value) if value > MAX_LIMIT => Err(FieldError::new(
            field,
            format!("must be at most {MAX_LIMIT}"),
        )),
        _ => Ok(()),
    }
}

/// A snapshot epoch: up to `MAX_EPOCH_CHARS` of `A-Z a-z 0-9 _ - .` (empty for backends that
/// have none).
pub fn epoch(epoch: &str) -> Result<(), FieldError> {
    let plain = epoch
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if epoch.len() > MAX_EPOCH_CHARS || !plain {
        return Err(FieldError::new(
            "epoch",
            format!("must be at most {MAX_EPOCH_CHARS} of A-Z a-z 0-9 _ - ."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_count_characters_not_bytes() {
        let keys = "🔑".repeat(128);
        assert_eq!(keys.len(), 512);
        assert!(label("name", &keys).is_ok());
        assert!(display_label("name", &keys).is_ok());
        assert!(label("team", &"東".repeat(128)).is_ok());
        let long = label("name", &"🔑".repeat(129)).unwrap_err();
        assert_eq!(long.to_string(), "name: must be at most 128 characters");
        assert!(label("name", "a\r\nb").is_err());
        assert!(label("name", "a\u{7f}").is_err());
        assert!(identifier("id", "").is_err());
    }

    #[test]
    fn display_labels_refuse_invisible_formatting() {
        for text in [
            "admin\u{202E}txt",
            "a\u{2066}b\u{2069}",
            "zero\u{200B}width",
            "joiner\u{200D}",
            "\u{FEFF}bom",
            "tag\u{E0041}",
            "soft\u{00AD}hyphen",
        ] {
            let error = display_label("name", text).unwrap_err();
            assert!(error.message.contains("invisible"), "{text:?}: {error}");
            assert!(
                label("name", text).is_ok(),
                "the filter still reads {text:?}"
            );
        }
        assert!(display_label("name", "Ünïcödé 東京 🔑 ok").is_ok());
    }

    #[test]
    fn scopes_are_plain_and_unique() {
        assert!(scopes("scopes", &["submit_job".into(), "a.b:c-d".into()]).is_ok());
        for (bad, field) in [
            (vec!["a,b".to_string()], "scopes[0]"),
            (vec!["".to_string()], "scopes[0]"),
            (vec!["ok".to_string(), "a b".to_string()], "scopes[1]"),
            (vec!["x".to_string(), "x".to_string()], "scopes[1]"),
            (vec!["x".repeat(129)], "scopes[0]"),
        ] {
            assert_eq!(scopes("scopes", &bad).unwrap_err().field, field, "{bad:?}");
        }
    }

    #[test]
    fn allowlist_entries_are_canonical() {
        let net = |text: &str| text.parse::<IpNet>().unwrap();
        let cases = [
            ("10.0.0.1/8", net("10.0.0.0/8")),
            ("10.0.0.1", net("10.0.0.1/32")),
            ("::ffff:127.0.0.1", net("127.0.0.1/32")),
            ("::ffff:10.1.2.3/104", net("10.0.0.0/8")),
            ("::ffff:0:0/96", net("0.0.0.0/0")),
            ("::1", net("::1/128")),
            ("2001:db8::1/32", net("2001:db8::/32")),
            ("::ffff:0:0/95", net("::fffe:0:0/95")),
        ];
        for (entry, expected) in cases {
            assert_eq!(allowlist_entry(entry), Some(expected), "{entry}");
        }
        for bad in ["10.0.0.0/33", "example.com", "", "10.0.0.0/"] {
            assert_eq!(allowlist_entry(bad), None, "{bad}");
        }
    }

    #[test]
    fn canonical_entries_are_written_back_plainly() {
        for (entry, text) in [
            ("::ffff:127.0.0.1", "127.0.0.1"),
            ("10.0.0.1/32", "10.0.0.1"),
            ("10.0.0.1/8", "10.0.0.0/8"),
            ("::1", "::1"),
            ("2001:db8::1/32", "2001:db8::/32"),
        ] {
            assert_eq!(
                allowlist_text(&allowlist_entry(entry).unwrap()),
                text,
                "{entry}"
            );
        }
    }

    #[test]
    fn duplicate_networks_are_refused_on_write_and_merged_on_read() {
        let entries: Vec<String> = ["10.0.0.1/8", "10.9.9.9/8", "::ffff:10.0.0.0/104"]
            .iter()
            .map(|e| e.to_string())
            .collect();
        let error = allowlist("allowed_ips", &entries, Duplicates::Refuse).unwrap_err();
        assert_eq!(error.field, "allowed_ips[1]");
        let merged = allowlist("allowed_ips", &entries, Duplicates::Merge).unwrap();
        assert_eq!(merged, vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_address() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(canonical_ip(ip("::ffff:127.0.0.1")), ip("127.0.0.1"));
        assert_eq!(canonical_ip(ip("::1")), ip("::1"));
        assert_eq!(canonical_ip(ip("10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn limits_and_epochs() {
        assert!(limit("limits.per_minute", None).is_ok());
        assert!(limit("limits.per_minute", Some(1)).is_ok());
        assert!(limit("limits.per_minute", Some(0)).is_err());
        assert!(limit("limits.per_minute", Some(MAX_LIMIT + 1)).is_err());
        assert!(epoch("").is_ok());
        assert!(epoch("01HX-abc_1.2").is_ok());
        for bad in ["a&since=0", "a\"b", "a b", "é", &"e".repeat(65)] {
            assert!(epoch(bad).is_err(), "{bad:?}");
        }
    }
}
