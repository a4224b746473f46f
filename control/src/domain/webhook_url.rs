//! Which URLs a webhook may call (no SSRF): `https` only, and no address inside the service's
//! own networks: loopback, private, link-local (cloud metadata lives there), shared, multicast,
//! reserved or unspecified, in IPv4, IPv6 or any IPv6 form that carries an IPv4 address.
//! Checked when an endpoint is saved and again on every delivery, against every address the name
//! resolves to (one refused address refuses the delivery: the most restrictive reading).
//! `serve --webhook-allow-private` lifts both rules for local use.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::Url;

/// Longest webhook URL.
pub const MAX_URL_CHARS: usize = 2048;

/// Whether private addresses and plain `http` are allowed (`--webhook-allow-private`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    pub allow_private: bool,
}

/// Parses and checks a webhook URL's form (the addresses are checked when it is resolved).
pub fn check_url(text: &str, policy: UrlPolicy) -> Result<Url, String> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(format!("must be at most {MAX_URL_CHARS} characters"));
    }
    let url = Url::parse(text).map_err(|error| format!("not a URL: {error}"))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_private => {}
        "http" => {
            return Err(
                "must be https (plain http is allowed only with --webhook-allow-private)".into(),
            )
        }
        other => return Err(format!("must be https, not {other}")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    let Some(host) = url.host() else {
        return Err("must name a host".into());
    };
    if let url::Host::Ipv4(address) = host {
        check_address(IpAddr::V4(address), policy)?;
    }
    if let url::Host::Ipv6(address) = host {
        check_address(IpAddr::V6(address), policy)?;
    }
    Ok(url)
}

/// Refuses an address a webhook must not reach, saying which kind it is.
pub fn check_address(address: IpAddr, policy: UrlPolicy) -> Result<(), String> {
    if policy.allow_private {
        return Ok(());
    }
    match forbidden_kind(address) {
        Some(kind) => Err(format!(
            "resolves to {address}, a {kind} address (allowed only with --webhook-allow-private)"
        )),
        None => Ok(()),
    }
}

/// What kind of non-public address `address` is, if it is one.
pub fn forbidden_kind(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => v4_kind(v4).or_else(|| v6_kind(v6)),
            None => v6_kind(v6),
        },
    }
}

fn v4_kind(address: Ipv4Addr) -> Option<&'static str> {
    let [a, b, _, _] = address.octets();
    if address.is_loopback() {
        Some("loopback")
    } else if address.is_private() {
        Some("private")
    } else if address.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if address.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if address.is_multicast() || address.is_broadcast() || a >= 240 {
        Some("multicast or reserved")
    } else if special_purpose_v4(address) {
        Some("special-purpose")
    } else {
        None
    }
}

/// IETF protocol assignments (192.0.0.0/24), the deprecated 6to4 relay anycast (192.88.99.0/24),
/// the documentation networks and the benchmarking network (198.18.0.0/15): never a real
/// endpoint.
fn special_purpose_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    matches!(
        (a, b, c),
        (192, 0, 0) | (192, 0, 2) | (192, 88, 99) | (198, 51, 100) | (203, 0, 113)
    ) || a == 198 && (18..20).contains(&b)
}

fn v6_kind(address: Ipv6Addr) -> Option<&'static str> {
    let first = address.segments()[0];
    if address.is_loopback() {
        Some("loopback")
    } else if address.is_unspecified() {
        Some("unspecified")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        Some("link-local")
    } else if address.is_multicast() {
        Some("multicast")
    } else if first == 0x2001 && address.segments()[1] == 0x0db8 {
        Some("documentation")
    } else if first == 0x64 && address.segments()[1] == 0xff9b && address.segments()[2] == 1 {
        // Local-use NAT64 (64:ff9b:1::/48): a translator of the site's own choosing.
        Some("NAT64 (local use)")
    } else if first == 0x2001 && address.segments()[1] == 0 {
        // Teredo: the IPv4 endpoints it tunnels to are hidden in the address.
        Some("Teredo tunnel")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address carries: mapped (`::ffff:a.b.c.d`), compatible
/// (`::a.b.c.d`), translated (`::ffff:0:a.b.c.d`), NAT64 (`64:ff9b::/96`) or 6to4
/// (`2002:AABB:CCDD::/48`).
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = address.segments();
    let octets = address.octets();
    let tail = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if segments[..5] == [0; 5]
        && (segments[5] == 0xffff || segments[5] == 0)
        && !address.is_loopback()
        && !address.is_unspecified()
    {
        return Some(tail);
    }
    if segments[..6] == [0, 0, 0, 0, 0xffff, 0] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    if segments[0] == 0x2002 {
        return Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: UrlPolicy = UrlPolicy {
        allow_private: false,
    };
    const LOCAL: UrlPolicy = UrlPolicy {
        allow_private: true,
    };

    #[test]
    fn non_public_addresses_are_refused() {
        let refused = [
            "127.0.0.1",
            "127.8.9.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2001:db8::1",
            "::ffff:0:7f00:1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "192.0.2.1",
            "198.51.100.7",
            "192.88.99.1",
            "64:ff9b:1::a00:1",
            "203.0.113.9",
        ];
        for address in refused {
            let address: IpAddr = address.parse().unwrap();
            assert!(forbidden_kind(address).is_some(), "{address} was allowed");
            assert!(check_address(address, STRICT).is_err());
            assert!(check_address(address, LOCAL).is_ok());
        }
        for address in [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let address: IpAddr = address.parse().unwrap();
            assert_eq!(forbidden_kind(address), None, "{address} was refused");
        }
    }

    #[test]
    fn urls_must_be_https_to_a_public_host() {
        assert!(check_url("https://hooks.example.com/keygate?x=1", STRICT).is_ok());
        let refused = [
            ("http://hooks.example.com/", "must be https"),
            ("ftp://hooks.example.com/", "must be https"),
            ("https://127.0.0.1/", "loopback"),
            ("https://[::1]:8443/", "loopback"),
            ("https://169.254.169.254/latest/meta-data", "link-local"),
            ("https://10.0.0.7/", "private"),
            ("https://user:pw@hooks.example.com/", "user name"),
            ("https://hooks.example.com/#x", "fragment"),
            ("not a url", "not a URL"),
        ];
        for (url, expected) in refused {
            let error = check_url(url, STRICT).unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
        }
        assert!(check_url("http://127.0.0.1:9000/hook", LOCAL).is_ok());
        assert!(check_url(
            &format!("https://a.example/{}", "p".repeat(MAX_URL_CHARS)),
            STRICT
        )
        .is_err());
    }
}
