//! The per-key record a validated snapshot record becomes (`contract::record`), before the store
//! packs it into a shard (`record.rs`), and what the decision asks of a key either way.

use std::net::IpAddr;

pub use keygate_contract::stored_key::StoredKey;

/// What the decision reads of a key: from a `StoredKey`, or from a `KeyView` borrowed from a
/// shard on the request path.
pub trait KeyFacts {
    fn id(&self) -> &str;
    /// `live` or `test`.
    fn environment(&self) -> &str;
    fn active(&self) -> bool;
    /// Unix seconds.
    fn expires_at(&self) -> Option<i64>;
    /// Whether a request from `ip` may use the key; an empty allowlist allows every address.
    fn allows_ip(&self, ip: Option<IpAddr>) -> bool;
    /// Whether the key holds `scope`; a key without scopes has full access.
    fn has_scope(&self, scope: &str) -> bool;
}

impl KeyFacts for StoredKey {
    fn id(&self) -> &str {
        &self.id
    }

    fn environment(&self) -> &str {
        &self.environment
    }

    fn active(&self) -> bool {
        self.active
    }

    fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    fn allows_ip(&self, ip: Option<IpAddr>) -> bool {
        crate::policy::net::ip_allowed(&self.allowed_ips, ip)
    }

    fn has_scope(&self, scope: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == scope)
    }
}

/// A key with every field set, for the store codecs' tests.
#[cfg(test)]
pub(crate) fn full_key() -> StoredKey {
    use keygate_contract::snapshot::Limits;

    StoredKey {
        generation: 1_795_467_600_123,
        id: "key_2VxQ9kLmN3pR8sT1".into(),
        name: "Production server ✓".into(),
        team: "acme".into(),
        environment: "live".into(),
        prefix: "pk_live_".into(),
        scopes: vec!["submit_job".into(), "check_status".into()],
        allowed_ips: vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
            "192.0.2.7/32".parse().unwrap(),
        ],
        expires_at: Some(-5),
        active: true,
        limits: Limits {
            per_minute: Some(60),
            per_hour: None,
            per_day: Some(1000),
            concurrent: Some(u64::MAX),
        },
        quota_exceeded_until: Some(1_900_000_000),
    }
}
