//! One key as a shard holds it (store layout 2): only what the request path reads, in a form it
//! can use without copying or allocating. A request borrows a `KeyView` straight from the shard
//! bytes it read: the id, name, team and environment are the forwarded header values, the scopes
//! are kept already joined as `x-keygate-scopes` carries them, the allowlist is fixed-size
//! entries matched in place. Fields the filter never reads (prefix, last4, plan) are not kept,
//! and neither is a generation: the shard carries it once for all its keys.
//!
//! Layout (little-endian; `var` is an unsigned LEB128 varint, so a limit of 60 or a 20-byte
//! name takes one byte of length, not eight or two: a million keys are about 12 MB smaller):
//! `flags u8` (active, has expiry, has quota) · `limit mask u8` (bit i: limit i present) ·
//! `expires_at i64`? · `quota_exceeded_until i64`? · present limits as `var` ·
//! `environment u8` (1 `live`, 2 `test`, 0: a string follows) ·
//! `id`, `name`, `team`, `scopes` as strings (`var` length, UTF-8) · `var` count of 18-byte
//! allowlist entries (`4|6`, 16 address bytes, prefix length).
//!
//! Decoding never panics: malformed bytes are `None`, which reads as "no such key".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::store::key::{KeyFacts, StoredKey};
use keygate_contract::fields::{canonical_ip, MAX_ENTRIES};
use keygate_contract::reader::Reader;
use keygate_contract::snapshot::Limits;

const ACTIVE: u8 = 1;
const HAS_EXPIRY: u8 = 2;
const HAS_QUOTA: u8 = 4;
const ENV_OTHER: u8 = 0;
const ENV_LIVE: u8 = 1;
const ENV_TEST: u8 = 2;
const NET_LEN: usize = 18;

fn put_var(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_var(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// The shard form of a validated key.
pub fn encode(key: &StoredKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + key.id.len() + key.name.len() + key.team.len());
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
    let limits = limit_array(&key.limits);
    let mask = limits
        .iter()
        .enumerate()
        .fold(0u8, |m, (i, l)| if l.is_some() { m | (1 << i) } else { m });
    out.push(mask);
    for at in [key.expires_at, key.quota_exceeded_until]
        .into_iter()
        .flatten()
    {
        out.extend_from_slice(&at.to_le_bytes());
    }
    for limit in limits.into_iter().flatten() {
        put_var(&mut out, limit);
    }
    match key.environment.as_str() {
        "live" => out.push(ENV_LIVE),
        "test" => out.push(ENV_TEST),
        other => {
            out.push(ENV_OTHER);
            put_str(&mut out, other);
        }
    }
    put_str(&mut out, &key.id);
    put_str(&mut out, &key.name);
    put_str(&mut out, &key.team);
    put_str(&mut out, &key.scopes.join(","));
    let nets = &key.allowed_ips[..key.allowed_ips.len().min(MAX_ENTRIES)];
    put_var(&mut out, nets.len() as u64);
    for net in nets {
        let (family, octets) = match net.addr() {
            IpAddr::V4(v4) => (4, v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => (6, v6.octets()),
        };
        out.push(family);
        out.extend_from_slice(&octets);
        out.push(net.prefix_len());
    }
    out
}

fn limit_array(limits: &Limits) -> [Option<u64>; 4] {
    [
        limits.per_minute,
        limits.per_hour,
        limits.per_day,
        limits.concurrent,
    ]
}

/// Whether the encoded record has any rate or concurrency limit (its limit mask), without
/// decoding it: the store counts limited keys as it merges shards.
pub fn is_limited(record: &[u8]) -> bool {
    record.get(1).is_some_and(|mask| mask & 0x0F != 0)
}

/// A key borrowed from a shard: what the request path reads, with no copy.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub team: &'a str,
    pub environment: &'a str,
    /// The scopes joined by commas (scope names cannot hold one); empty means full access.
    pub scopes: &'a str,
    /// Allowlist entries, 18 bytes each.
    allowed_ips: &'a [u8],
    pub expires_at: Option<i64>,
    pub active: bool,
    pub limits: Limits,
    pub quota_exceeded_until: Option<i64>,
}

/// A string: its `var` length, then UTF-8, borrowed.
fn str<'a>(reader: &mut Reader<'a>) -> Option<&'a str> {
    let len = usize::try_from(reader.varint()?).ok()?;
    reader.text(len)
}

impl<'a> KeyView<'a> {
    pub fn decode(bytes: &'a [u8]) -> Option<KeyView<'a>> {
        let mut reader = Reader::new(bytes);
        let flags = reader.u8()?;
        let mask = reader.u8()?;
        let mut instant = |present: bool| -> Option<Option<i64>> {
            if present {
                Some(Some(reader.u64()? as i64))
            } else {
                Some(None)
            }
        };
        let expires_at = instant(flags & HAS_EXPIRY != 0)?;
        let quota_exceeded_until = instant(flags & HAS_QUOTA != 0)?;
        let mut limits = [None; 4];
        for (i, limit) in limits.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                *limit = Some(reader.varint()?);
            }
        }
        let environment = match reader.u8()? {
            ENV_LIVE => "live",
            ENV_TEST => "test",
            ENV_OTHER => str(&mut reader)?,
            _ => return None,
        };
        let id = str(&mut reader)?;
        let name = str(&mut reader)?;
        let team = str(&mut reader)?;
        let scopes = str(&mut reader)?;
        let nets = usize::try_from(reader.varint()?).ok()?;
        let allowed_ips = reader.take(nets.checked_mul(NET_LEN)?)?;
        if !reader.bytes.is_empty() {
            return None;
        }
        Some(KeyView {
            id,
            name,
            team,
            environment,
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

    /// The allowlist; an entry that does not decode is skipped (it can match nobody).
    pub fn allowed_ips(&self) -> impl Iterator<Item = IpNet> + 'a {
        self.allowed_ips.chunks_exact(NET_LEN).filter_map(|entry| {
            let octets: [u8; 16] = entry.get(1..17)?.try_into().ok()?;
            let v6 = Ipv6Addr::from(octets);
            let addr = match entry[0] {
                4 => IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED)),
                6 => IpAddr::V6(v6),
                _ => return None,
            };
            IpNet::new(addr, entry[17]).ok()
        })
    }

    pub fn has_allowlist(&self) -> bool {
        !self.allowed_ips.is_empty()
    }
}

impl KeyFacts for KeyView<'_> {
    fn id(&self) -> &str {
        self.id
    }

    fn environment(&self) -> &str {
        self.environment
    }

    fn active(&self) -> bool {
        self.active
    }

    fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    fn allows_ip(&self, ip: Option<IpAddr>) -> bool {
        if !self.has_allowlist() {
            return true;
        }
        let Some(ip) = ip else {
            return false;
        };
        let canonical = canonical_ip(ip);
        self.allowed_ips()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    fn has_scope(&self, scope: &str) -> bool {
        self.scopes.is_empty() || self.scopes.split(',').any(|s| s == scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::key::full_key;

    #[test]
    fn varints_take_one_byte_below_128_and_round_trip_u64_max() {
        let mut out = Vec::new();
        put_var(&mut out, 60);
        assert_eq!(out, [60]);
        for value in [0, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            put_var(&mut out, value);
            assert_eq!(Reader::new(&out).varint(), Some(value), "{value}");
        }
    }

    #[test]
    fn a_view_reads_back_every_field_the_filter_uses() {
        let key = full_key();
        let bytes = encode(&key);
        let view = KeyView::decode(&bytes).unwrap();
        assert_eq!(view.id, key.id);
        assert_eq!(view.name, key.name);
        assert_eq!(view.team, "acme");
        assert_eq!(view.environment, "live");
        assert_eq!(view.scopes, "submit_job,check_status");
        assert_eq!(view.allowed_ips().collect::<Vec<_>>(), key.allowed_ips);
        assert_eq!(view.expires_at, Some(-5));
        assert_eq!(view.quota_exceeded_until, Some(1_900_000_000));
        assert_eq!(view.limits, key.limits);
        assert!(view.active && is_limited(&bytes));
    }

    #[test]
    fn other_environments_and_bare_keys_round_trip() {
        let key = StoredKey {
            environment: "staging".into(),
            scopes: vec![],
            allowed_ips: vec![],
            expires_at: None,
            quota_exceeded_until: None,
            active: false,
            limits: Limits::default(),
            team: String::new(),
            ..full_key()
        };
        let bytes = encode(&key);
        let view = KeyView::decode(&bytes).unwrap();
        assert_eq!(
            (view.environment, view.scopes, view.team),
            ("staging", "", "")
        );
        assert!(!view.active && !view.has_allowlist() && !is_limited(&bytes));
        assert_eq!((view.expires_at, view.quota_exceeded_until), (None, None));
        assert_eq!(
            KeyView::decode(&encode(&StoredKey {
                environment: "test".into(),
                ..key
            }))
            .unwrap()
            .environment,
            "test"
        );
    }

    #[test]
    fn facts_match_the_parsed_key() {
        let key = full_key();
        let bytes = encode(&key);
        let view = KeyView::decode(&bytes).unwrap();
        for scope in ["submit_job", "check_status", "submit", "job", ""] {
            assert_eq!(view.has_scope(scope), key.has_scope(scope), "{scope}");
        }
        for ip in [
            "10.1.2.3",
            "::ffff:10.1.2.3",
            "11.0.0.1",
            "2001:db8::5",
            "192.0.2.7",
        ] {
            let ip = Some(ip.parse().unwrap());
            assert_eq!(view.allows_ip(ip), key.allows_ip(ip), "{ip:?}");
        }
        assert!(!view.allows_ip(None));
    }

    #[test]
    fn every_truncation_and_garbage_is_rejected_without_panic() {
        let bytes = encode(&full_key());
        for end in 0..bytes.len() {
            assert_eq!(KeyView::decode(&bytes[..end]), None, "truncated at {end}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(KeyView::decode(&extra), None);
        let mut bad_env = encode(&StoredKey {
            expires_at: None,
            quota_exceeded_until: None,
            limits: Limits::default(),
            ..full_key()
        });
        bad_env[2] = 9;
        assert_eq!(KeyView::decode(&bad_env), None);
        for byte in 0..=255u8 {
            let _ = KeyView::decode(&[byte; 40]);
        }
        // A varint that never ends, or one over 64 bits.
        assert_eq!(KeyView::decode(&[1, 1, 0xff, 0xff, 0xff]), None);
        assert_eq!(
            KeyView::decode(&[1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            None
        );
    }
}
