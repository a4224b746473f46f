//! The key the filter keeps: what a snapshot record becomes once checked (`record`), already
//! parsed for the request path. Plain data; how the filter packs and reads it is the filter's.

use ipnet::IpNet;

use crate::snapshot::Limits;

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
