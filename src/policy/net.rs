//! Client address: Envoy's `source.address`, or X-Forwarded-For when hops are trusted; and
//! matching it against a key's allowlist.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use keygate_contract::fields::canonical_ip;

/// Parses an address as Envoy or a proxy writes it: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`.
pub fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse().ok())
}

/// The client IP. With `trusted_hops` N > 0 it is the Nth address from the right of
/// X-Forwarded-For as it reached Envoy (each trusted proxy in front appends the address it
/// saw), which is what Envoy's own `xff_num_trusted_hops` picks. The filter runs after Envoy
/// has appended its own entry: the connection manager must have `use_remote_address: true`
/// (as shipped), which also keeps `source.address` the real TCP peer, so the rightmost entry is
/// Envoy's and is skipped. With fewer entries than N, or N = 0, it is the peer address. An
/// unparsable entry at the trusted position yields `None`: no allowlist can match it.
pub fn client_ip(peer: Option<IpAddr>, xff: Option<&[u8]>, trusted_hops: usize) -> Option<IpAddr> {
    if trusted_hops == 0 {
        return peer;
    }
    let Some(xff) = xff.and_then(|raw| std::str::from_utf8(raw).ok()) else {
        return peer;
    };
    let mut entries: Vec<&str> = xff
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    entries.pop();
    if entries.len() < trusted_hops {
        return peer;
    }
    parse_address(entries[entries.len() - trusted_hops])
}

/// Parses an allowlist entry (IP or CIDR) into its canonical network; see
/// `contract::fields::allowlist_entry`, the one definition both sides use.
pub fn parse_allowlist_entry(entry: &str) -> Option<IpNet> {
    keygate_contract::fields::allowlist_entry(entry)
}

/// Whether `ip` is allowed by the list; an empty list allows every address. Entries are
/// canonical (IPv4-mapped networks stored as IPv4), and an IPv4-mapped client
/// (`::ffff:1.2.3.4`, common on dual-stack listeners) is matched as the IPv4 address it
/// carries as well as the IPv6 address it is.
pub fn ip_allowed(allowed: &[IpNet], ip: Option<IpAddr>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(ip) = ip else {
        return false;
    };
    let canonical = canonical_ip(ip);
    allowed
        .iter()
        .any(|net| net.contains(&ip) || net.contains(&canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_envoy_and_proxy_address_forms() {
        assert_eq!(parse_address("127.0.0.1:5555"), Some(ip("127.0.0.1")));
        assert_eq!(parse_address("[::1]:5555"), Some(ip("::1")));
        assert_eq!(parse_address("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_address(" 10.0.0.1 "), Some(ip("10.0.0.1")));
        assert_eq!(parse_address("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_address("unknown"), None);
        assert_eq!(parse_address(""), None);
    }

    #[test]
    fn xff_is_ignored_unless_hops_are_trusted() {
        let peer = Some(ip("192.0.2.1"));
        assert_eq!(client_ip(peer, Some(b"6.6.6.6"), 0), peer);
        assert_eq!(client_ip(peer, None, 1), peer);
    }

    #[test]
    fn xff_takes_nth_from_the_right_before_envoys_own_entry() {
        let peer = Some(ip("192.0.2.1"));
        // "192.0.2.2" is what Envoy appended for this hop.
        let xff: &[u8] = b"6.6.6.6, 203.0.113.7, 10.0.0.2,192.0.2.2";
        assert_eq!(client_ip(peer, Some(xff), 1), Some(ip("10.0.0.2")));
        assert_eq!(client_ip(peer, Some(xff), 2), Some(ip("203.0.113.7")));
        assert_eq!(client_ip(peer, Some(xff), 3), Some(ip("6.6.6.6")));
        assert_eq!(client_ip(peer, Some(xff), 4), peer);
        assert_eq!(client_ip(peer, Some(b"192.0.2.2"), 1), peer);
        assert_eq!(client_ip(peer, Some(b"junk, 10.0.0.2, 192.0.2.2"), 2), None);
        assert_eq!(client_ip(peer, Some(b"\xff"), 1), peer);
        assert_eq!(
            client_ip(peer, Some(b"[2001:db8::5]:443, ::1"), 1),
            Some(ip("2001:db8::5"))
        );
    }

    #[test]
    fn allowlist_matches_v4_v6_and_mapped() {
        let list: Vec<IpNet> = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
            .iter()
            .map(|e| parse_allowlist_entry(e).unwrap())
            .collect();
        assert!(ip_allowed(&list, Some(ip("10.1.2.3"))));
        assert!(ip_allowed(&list, Some(ip("192.0.2.7"))));
        assert!(!ip_allowed(&list, Some(ip("192.0.2.8"))));
        assert!(ip_allowed(&list, Some(ip("2001:db8:1::1"))));
        assert!(!ip_allowed(&list, Some(ip("2001:db9::1"))));
        assert!(ip_allowed(&list, Some(ip("::ffff:10.9.9.9"))));
        let mapped_entry = [parse_allowlist_entry("::ffff:127.0.0.1").unwrap()];
        assert!(ip_allowed(&mapped_entry, Some(ip("127.0.0.1"))));
        assert!(ip_allowed(&mapped_entry, Some(ip("::ffff:127.0.0.1"))));
        assert!(!ip_allowed(&mapped_entry, Some(ip("127.0.0.2"))));
        assert!(!ip_allowed(&list, None));
        assert!(ip_allowed(&[], None));
        assert!(ip_allowed(&[], Some(ip("8.8.8.8"))));
    }

    #[test]
    fn allowlist_entries_validate() {
        assert_eq!(
            parse_allowlist_entry("10.0.0.1/8"),
            Some("10.0.0.0/8".parse().unwrap())
        );
        assert!(parse_allowlist_entry("10.0.0.0/33").is_none());
        assert!(parse_allowlist_entry("not-an-ip").is_none());
        assert!(parse_allowlist_entry("::1").is_some());
    }
}
