//! Proxy identity: a proxy as stored (only the SHA-256 of its credential), an enrollment token,
//! how both are minted, and what a proxy's state is from when it was last seen.
//!
//! A proxy is known by its name (stable across restarts: an Istio sidecar's node id, a host
//! name). Enrolling again under a name keeps the identity and its history and replaces the
//! credential; a revoked proxy's name stays revoked, and an issued one is not enrolled over.

use crate::domain::secrets;
use crate::domain::tokens::digest;
use chrono::{DateTime, Duration, Utc};
use keygate_contract::enrollment::{CREDENTIAL_PREFIX, ENROLLMENT_PREFIX};
use std::collections::BTreeMap;

/// Random base62 characters of a credential or enrollment token after its prefix (~238 bits).
pub const SECRET_RANDOM_LEN: usize = 40;
const ID_RANDOM_LEN: usize = 16;

/// A proxy row; never the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProxy {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub credential_hash: String,
    pub credential_last4: String,
    /// The enrollment token it enrolled with last; `None`: issued by an admin.
    pub enrolled_with: Option<String>,
    pub created_at: DateTime<Utc>,
    pub enrolled_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub presence: Presence,
}

/// What the control service saw of a proxy lately (flushed from each replica's memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    pub last_seen: Option<DateTime<Utc>>,
    /// The snapshot version its last read asked from (`since`), and when that read came.
    pub snapshot_version: Option<u64>,
    pub snapshot_read_at: Option<DateTime<Utc>>,
    pub last_report: Option<DateTime<Utc>>,
    pub report_failing_since: Option<DateTime<Utc>>,
    pub last_sync: Option<DateTime<Utc>>,
    pub sync_failing_since: Option<DateTime<Utc>>,
}

impl Presence {
    /// `self` with what `newer` saw added: later instants win, a failure stays until a later
    /// success clears it.
    pub fn merge(&mut self, newer: &Presence) {
        fn later(held: &mut Option<DateTime<Utc>>, seen: Option<DateTime<Utc>>) {
            *held = (*held).max(seen);
        }
        // The newer read's version, whichever replica saw it (not the newer sighting's: that
        // may be a report, while an older flush's read is the later one).
        if newer.snapshot_version.is_some() && newer.snapshot_read_at >= self.snapshot_read_at {
            self.snapshot_version = newer.snapshot_version;
            self.snapshot_read_at = newer.snapshot_read_at;
        }
        later(&mut self.last_seen, newer.last_seen);
        merge_outcome(
            (&mut self.last_report, &mut self.report_failing_since),
            (newer.last_report, newer.report_failing_since),
        );
        merge_outcome(
            (&mut self.last_sync, &mut self.sync_failing_since),
            (newer.last_sync, newer.sync_failing_since),
        );
    }
}

/// A success at `ok` clears a failure that began before it; a failure keeps its first instant.
fn merge_outcome(
    held: (&mut Option<DateTime<Utc>>, &mut Option<DateTime<Utc>>),
    newer: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) {
    let (ok, failing) = held;
    *ok = (*ok).max(newer.0);
    *failing = match (*failing, newer.1) {
        (Some(held), Some(new)) => Some(held.min(new)),
        (held, new) => held.or(new),
    };
    if let (Some(ok), Some(since)) = (*ok, *failing) {
        if ok > since {
            *failing = None;
        }
    }
}

/// A proxy's state in the fleet list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyState {
    Live,
    /// Not seen for longer than the stale bound (several missed polls).
    Stale,
    Revoked,
}

impl ProxyState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyState::Live => "live",
            ProxyState::Stale => "stale",
            ProxyState::Revoked => "revoked",
        }
    }
}

impl StoredProxy {
    pub fn state(&self, now: DateTime<Utc>, stale_after: Duration) -> ProxyState {
        if self.revoked_at.is_some() {
            return ProxyState::Revoked;
        }
        match self.presence.last_seen {
            Some(seen) if now - seen <= stale_after => ProxyState::Live,
            _ => ProxyState::Stale,
        }
    }

    /// Versions it is behind `head` (0 when current or never read).
    pub fn lag_versions(&self, head: u64) -> u64 {
        self.presence
            .snapshot_version
            .map_or(0, |held| head.saturating_sub(held))
    }

    /// How long it has not held the newest version: since the first version after the one it
    /// holds was published (`behind_since`, from the feed's clock), zero when it is current.
    pub fn lag(
        &self,
        head: u64,
        now: DateTime<Utc>,
        behind_since: impl Fn(u64) -> Option<DateTime<Utc>>,
    ) -> Duration {
        let Some(held) = self.presence.snapshot_version else {
            // Never read a snapshot: nothing is known to lag.
            return Duration::zero();
        };
        if held >= head {
            return Duration::zero();
        }
        behind_since(held).map_or(Duration::zero(), |since| {
            (now - since).max(Duration::zero())
        })
    }
}

/// An enrollment token row; never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    pub id: String,
    pub hash: String,
    pub last4: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Enrollments it made.
    pub enrolled: i64,
}

impl EnrollmentToken {
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expiry| expiry > now)
    }
}

/// A secret and the digest that is all that is stored of it.
pub struct Minted {
    pub secret: String,
    pub hash: String,
    pub last4: String,
}

fn mint_secret(prefix: &str) -> Result<Minted, getrandom::Error> {
    let secret = format!("{prefix}{}", secrets::random_base62(SECRET_RANDOM_LEN)?);
    Ok(Minted {
        hash: digest(&secret),
        last4: secrets::last4(&secret),
        secret,
    })
}

/// A new proxy credential (`kgp_…`).
pub fn mint_credential() -> Result<Minted, getrandom::Error> {
    mint_secret(CREDENTIAL_PREFIX)
}

/// A new enrollment token secret (`kge_…`).
pub fn mint_enrollment_secret() -> Result<Minted, getrandom::Error> {
    mint_secret(ENROLLMENT_PREFIX)
}

pub fn new_proxy_id() -> Result<String, getrandom::Error> {
    Ok(format!("prx_{}", secrets::random_base62(ID_RANDOM_LEN)?))
}

pub fn new_enrollment_id() -> Result<String, getrandom::Error> {
    Ok(format!("enr_{}", secrets::random_base62(ID_RANDOM_LEN)?))
}

/// The id a fleet-sync post is counted under: the proxy's identity, then the instance id the
/// Envoy gives itself (a restarted Envoy starts its counts afresh, as before identities), cut
/// to the contract's identifier length.
pub fn fleet_instance(proxy_id: &str, declared: &str) -> String {
    let mut id = format!("{proxy_id}/{declared}");
    let max = keygate_contract::fields::MAX_LABEL_CHARS;
    if let Some((cut, _)) = id.char_indices().nth(max) {
        id.truncate(cut);
    }
    id
}

/// One row of what a proxy reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub key_id: String,
    pub hour_start: i64,
    pub code: String,
    pub count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
    }

    fn proxy() -> StoredProxy {
        StoredProxy {
            id: "prx_a".into(),
            name: "envoy-1".into(),
            labels: BTreeMap::new(),
            version: "0.3.0".into(),
            credential_hash: "h".into(),
            credential_last4: "abcd".into(),
            enrolled_with: None,
            created_at: at(0),
            enrolled_at: at(0),
            revoked_at: None,
            presence: Presence::default(),
        }
    }

    #[test]
    fn state_follows_last_seen_and_revocation() {
        let mut proxy = proxy();
        let stale_after = Duration::seconds(90);
        assert_eq!(proxy.state(at(10), stale_after), ProxyState::Stale);
        proxy.presence.last_seen = Some(at(10));
        assert_eq!(proxy.state(at(100), stale_after), ProxyState::Live);
        assert_eq!(proxy.state(at(101), stale_after), ProxyState::Stale);
        proxy.revoked_at = Some(at(50));
        assert_eq!(proxy.state(at(60), stale_after), ProxyState::Revoked);
    }

    #[test]
    fn lag_counts_versions_and_time_behind() {
        let mut proxy = proxy();
        let published = |held: u64| Some(at(i64::try_from(held).unwrap() * 10 + 10));
        assert_eq!(proxy.lag_versions(10), 0);
        assert_eq!(proxy.lag(10, at(30), published), Duration::zero());
        proxy.presence.snapshot_version = Some(0);
        assert_eq!(proxy.lag(10, at(30), published), Duration::seconds(20));
        proxy.presence.snapshot_version = Some(7);
        assert_eq!(proxy.lag_versions(10), 3);
        assert_eq!(proxy.lag(10, at(100), published), Duration::seconds(20));
        assert_eq!(proxy.lag(7, at(100), published), Duration::zero());
        assert_eq!(proxy.lag_versions(5), 0);
        assert_eq!(proxy.lag(10, at(100), |_| None), Duration::zero());
    }

    #[test]
    fn presence_merges_later_instants_and_clears_failures_after_success() {
        let mut held = Presence {
            last_seen: Some(at(5)),
            snapshot_version: Some(3),
            snapshot_read_at: Some(at(5)),
            last_report: Some(at(1)),
            report_failing_since: Some(at(2)),
            ..Presence::default()
        };
        held.merge(&Presence {
            last_seen: Some(at(9)),
            snapshot_version: Some(4),
            snapshot_read_at: Some(at(9)),
            last_report: Some(at(8)),
            sync_failing_since: Some(at(7)),
            ..Presence::default()
        });
        assert_eq!(held.last_seen, Some(at(9)));
        assert_eq!(held.snapshot_version, Some(4));
        assert_eq!(held.report_failing_since, None);
        assert_eq!(held.sync_failing_since, Some(at(7)));
        held.merge(&Presence {
            last_seen: Some(at(2)),
            snapshot_version: Some(1),
            ..Presence::default()
        });
        assert_eq!(
            held.snapshot_version,
            Some(4),
            "an older sighting changes nothing"
        );
    }

    #[test]
    fn secrets_have_their_prefixes_and_fleet_ids_their_identity() {
        let credential = mint_credential().unwrap();
        assert!(keygate_contract::enrollment::is_credential(
            &credential.secret
        ));
        assert_eq!(credential.hash, digest(&credential.secret));
        assert!(mint_enrollment_secret().unwrap().secret.starts_with("kge_"));
        let instance = fleet_instance("prx_abc", "00ff");
        assert_eq!(instance, "prx_abc/00ff");
        assert_eq!(
            fleet_instance("prx_abc", &"x".repeat(300)).chars().count(),
            128
        );
    }
}
