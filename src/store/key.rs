//! The per-key record the filter keeps in its store: what the request path needs, already
//! parsed (its binary form is in `codec.rs`).

use ipnet::IpNet;

use crate::contract::snapshot::Limits;

/// One key as held in the filter's store: what the request path needs, already parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    /// Store generation this record was written in (see `store/mod.rs`).
    pub generation: u64,
    pub id: String,
    pub name: String,
    pub team: String,
    pub environment: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub allowed_ips: Vec<IpNet>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub active: bool,
    pub limits: Limits,
    /// Unix seconds.
    pub quota_exceeded_until: Option<i64>,
}

impl StoredKey {
    /// The compact binary form kept in shared data (see `codec.rs`).
    pub fn encode(&self) -> Vec<u8> {
        crate::store::codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Option<StoredKey> {
        crate::store::codec::decode(bytes)
    }
}
