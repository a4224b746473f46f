//! Compact binary form of a `StoredKey`, as kept in Envoy's shared data. A million keys live
//! there, and every request decodes one, so it is about half the size of JSON and needs no
//! parsing beyond length-prefixed reads. Decoding never panics: any malformed input is `None`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::store::key::StoredKey;
use keygate_contract::reader::Reader;
use keygate_contract::snapshot::Limits;

/// Format tag; a different first byte is rejected.
const FORMAT: u8 = 1;
const ACTIVE: u8 = 1;
const HAS_EXPIRY: u8 = 2;
const HAS_QUOTA: u8 = 4;
pub use keygate_contract::fields::MAX_ENTRIES;

fn put_str(out: &mut Vec<u8>, text: &str) {
    // Records are validated to at most 128 characters (512 bytes) per field; longer text is cut at a char
    // boundary rather than written with a wrong length.
    let mut end = text.len().min(u16::MAX as usize);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
}

pub fn encode(key: &StoredKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.push(FORMAT);
    out.extend_from_slice(&key.generation.to_le_bytes());
    let mut flags = 0;
    if key.active {
        flags |= ACTIVE;
    }
    if key.expires_at.is_some() {
        flags |= HAS_EXPIRY;
    }
    if key.quota_exceeded_until.is_some() {
        flags |= HAS_QUOTA;
    }
    out.push(flags);
    if let Some(at) = key.expires_at {
        out.extend_from_slice(&at.to_le_bytes());
    }
    if let Some(at) = key.quota_exceeded_until {
        out.extend_from_slice(&at.to_le_bytes());
    }
    let limits = [
        key.limits.per_minute,
        key.limits.per_hour,
        key.limits.per_day,
        key.limits.concurrent,
    ];
    let mask = limits
        .iter()
        .enumerate()
        .fold(0u8, |m, (i, l)| if l.is_some() { m | (1 << i) } else { m });
    out.push(mask);
    for limit in limits.into_iter().flatten() {
        out.extend_from_slice(&limit.to_le_bytes());
    }
    for text in [&key.id, &key.name, &key.team, &key.environment, &key.prefix] {
        put_str(&mut out, text);
    }
    // Counts are u16; `contract::fields` refuses records with more entries than that, so
    // nothing is ever dropped here.
    let scope_count = key.scopes.len().min(MAX_ENTRIES);
    out.extend_from_slice(&(scope_count as u16).to_le_bytes());
    for scope in key.scopes.iter().take(scope_count) {
        put_str(&mut out, scope);
    }
    let net_count = key.allowed_ips.len().min(MAX_ENTRIES);
    out.extend_from_slice(&(net_count as u16).to_le_bytes());
    for net in key.allowed_ips.iter().take(net_count) {
        match net.addr() {
            IpAddr::V4(v4) => {
                out.push(4);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.push(6);
                out.extend_from_slice(&v6.octets());
            }
        }
        out.push(net.prefix_len());
    }
    out
}

/// The layout-1 string: a `u16` length, then UTF-8.
fn string(reader: &mut Reader<'_>) -> Option<String> {
    let len = usize::from(reader.u16()?);
    reader.text(len).map(str::to_string)
}

fn net(reader: &mut Reader<'_>) -> Option<IpNet> {
    let addr = match reader.u8()? {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(reader.take(4)?).ok()?)),
        6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(reader.take(16)?).ok()?)),
        _ => return None,
    };
    IpNet::new(addr, reader.u8()?).ok()
}

pub fn decode(bytes: &[u8]) -> Option<StoredKey> {
    let mut reader = Reader::new(bytes);
    if reader.u8()? != FORMAT {
        return None;
    }
    let generation = reader.u64()?;
    let flags = reader.u8()?;
    let expires_at = if flags & HAS_EXPIRY != 0 {
        Some(reader.i64()?)
    } else {
        None
    };
    let quota_exceeded_until = if flags & HAS_QUOTA != 0 {
        Some(reader.i64()?)
    } else {
        None
    };
    let mask = reader.u8()?;
    let mut limits = [None; 4];
    for (i, limit) in limits.iter_mut().enumerate() {
        if mask & (1 << i) != 0 {
            *limit = Some(reader.u64()?);
        }
    }
    let id = string(&mut reader)?;
    let name = string(&mut reader)?;
    let team = string(&mut reader)?;
    let environment = string(&mut reader)?;
    let prefix = string(&mut reader)?;
    let scope_count = reader.u16()? as usize;
    let mut scopes = Vec::with_capacity(scope_count);
    for _ in 0..scope_count {
        scopes.push(string(&mut reader)?);
    }
    let net_count = reader.u16()? as usize;
    let mut allowed_ips = Vec::with_capacity(net_count);
    for _ in 0..net_count {
        allowed_ips.push(net(&mut reader)?);
    }
    if !reader.bytes.is_empty() {
        return None;
    }
    Some(StoredKey {
        generation,
        id,
        name,
        team,
        environment,
        prefix,
        scopes,
        allowed_ips,
        expires_at,
        active: flags & ACTIVE != 0,
        limits: Limits {
            per_minute: limits[0],
            per_hour: limits[1],
            per_day: limits[2],
            concurrent: limits[3],
        },
        quota_exceeded_until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::key::full_key;

    #[test]
    fn round_trips_full_and_minimal_keys() {
        let full = full_key();
        assert_eq!(decode(&encode(&full)), Some(full.clone()));
        let minimal = StoredKey {
            scopes: vec![],
            allowed_ips: vec![],
            expires_at: None,
            quota_exceeded_until: None,
            active: false,
            limits: Limits::default(),
            ..full
        };
        assert_eq!(decode(&encode(&minimal)), Some(minimal));
    }

    #[test]
    fn hundreds_of_allowlist_entries_and_scopes_survive() {
        let many = StoredKey {
            allowed_ips: (0..300u32)
                .map(|i| IpNet::from(IpAddr::V4(Ipv4Addr::from(i))))
                .collect(),
            scopes: (0..300).map(|i| format!("scope{i}")).collect(),
            ..full_key()
        };
        assert_eq!(decode(&encode(&many)), Some(many));
    }

    #[test]
    fn names_and_teams_of_the_longest_unicode_the_contract_accepts_survive() {
        let long = StoredKey {
            name: "🔑".repeat(128),
            team: "東".repeat(128),
            ..full_key()
        };
        assert_eq!(decode(&encode(&long)), Some(long));
    }

    #[test]
    fn every_truncation_and_garbage_is_rejected_without_panic() {
        let bytes = encode(&full_key());
        for end in 0..bytes.len() {
            assert_eq!(decode(&bytes[..end]), None, "truncated at {end}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(decode(&extra), None);
        let mut wrong_format = bytes.clone();
        wrong_format[0] = 2;
        assert_eq!(decode(&wrong_format), None);
        assert_eq!(decode(b"{\"g\":1}"), None);
        let mut bad_prefix = encode(&StoredKey {
            allowed_ips: vec!["10.0.0.0/8".parse().unwrap()],
            ..full_key()
        });
        let last = bad_prefix.len() - 1;
        bad_prefix[last] = 99;
        assert_eq!(decode(&bad_prefix), None);
    }
}
