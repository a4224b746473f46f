//! `net::client_ip`, `parse_address`, `parse_allowlist_entry` and `ip_allowed`.
//!
//! Input: byte 0 is the trusted hop count (mod 20), byte 1 bit 0 says whether Envoy gave a peer
//! address; the rest is split at `\n` into the X-Forwarded-For value (arbitrary bytes), an
//! address as Envoy or a proxy writes it, and an allowlist entry.
#![no_main]

use std::net::IpAddr;

use ipnet::IpNet;
use keygate::policy::net::{client_ip, ip_allowed, parse_address, parse_allowlist_entry};
use libfuzzer_sys::fuzz_target;

/// The allowlist entry that names exactly this address.
fn host_net(ip: IpAddr) -> IpNet {
    let text = match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    };
    parse_allowlist_entry(&text).unwrap_or_else(|| panic!("{text:?} rejected"))
}

fn check_address(ip: IpAddr) {
    assert_eq!(parse_address(&ip.to_string()), Some(ip));
    let list = [host_net(ip)];
    assert!(ip_allowed(&list, Some(ip)), "{ip} not allowed by its own /32 or /128");
    assert_eq!(
        parse_allowlist_entry(&ip.to_string()),
        Some(list[0]),
        "a bare address is not its host entry"
    );
    if let IpAddr::V4(v4) = ip {
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        assert!(ip_allowed(&list, Some(mapped)), "{mapped} not allowed by {ip}/32");
    }
    assert!(ip_allowed(&[], Some(ip)));
    assert!(!ip_allowed(&list, None));
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let hops = usize::from(data[0] % 20);
    let mut parts = data[2..].splitn(3, |&b| b == b'\n');
    let xff = parts.next().unwrap_or_default();
    let address = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let entry = String::from_utf8_lossy(parts.next().unwrap_or_default());

    let peer: Option<IpAddr> = (data[1] & 1 != 0).then(|| "192.0.2.1".parse().unwrap());
    let chosen = client_ip(peer, Some(xff), hops);
    if hops == 0 {
        assert_eq!(chosen, peer);
    }
    assert_eq!(client_ip(peer, None, hops), peer);
    if chosen != peer {
        // Anything other than the peer came from an XFF entry (before Envoy's own, rightmost).
        let text = std::str::from_utf8(xff).expect("non-UTF-8 XFF was used");
        let entries: Vec<&str> = text.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        assert!(entries.len() > hops, "{hops} hops but only {} entries", entries.len());
        let trusted = entries[entries.len() - 1 - hops];
        assert_eq!(chosen, parse_address(trusted), "picked the wrong entry");
    }
    if let Some(ip) = chosen {
        check_address(ip);
    }

    if let Some(ip) = parse_address(&address) {
        check_address(ip);
    }

    if let Some(net) = parse_allowlist_entry(&entry) {
        assert_eq!(net, net.trunc(), "entry not normalised");
        assert_eq!(parse_allowlist_entry(&net.to_string()), Some(net));
        assert!(ip_allowed(&[net], Some(net.network())));
        assert!(ip_allowed(&[net], Some(net.broadcast())));
        if let Some(ip) = parse_address(&address) {
            let direct = net.contains(&ip);
            assert!(!direct || ip_allowed(&[net], Some(ip)));
        }
    }
});
