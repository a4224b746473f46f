//! The credential this Envoy enrolled for (`enroll.rs`), kept in shared data so every worker's
//! jobs present the same one: `"{proxy_id}\n{credential}"`, empty once the control service
//! refused it (401), which makes the enroll job enroll again (same name: same identity).
//!
//! Never logged: log lines name the proxy id only.

use crate::host::Host;
use keygate_contract::enrollment;

/// Shared-data key of the enrolled identity.
pub const CREDENTIAL_KEY: &str = "keygate.proxy_credential";

/// The enrolled identity: proxy id and credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub proxy_id: String,
    pub credential: String,
}

/// The identity held now, if any (a malformed value reads as none).
pub fn current(host: &dyn Host) -> Option<Enrolled> {
    let bytes = host.get_shared(CREDENTIAL_KEY).0?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let (proxy_id, credential) = text.split_once('\n')?;
    (enrollment::is_credential(credential) && !proxy_id.is_empty()).then(|| Enrolled {
        proxy_id: proxy_id.to_string(),
        credential: credential.to_string(),
    })
}

/// Keeps a new identity for every worker.
pub fn store(host: &dyn Host, enrolled: &Enrolled) -> bool {
    let value = format!("{}\n{}", enrolled.proxy_id, enrolled.credential);
    host.set_shared(CREDENTIAL_KEY, value.as_bytes(), None)
        .is_ok()
}

/// The control service refused `credential`: forget it, unless another worker already put a
/// newer one in its place. Answers whether it was forgotten.
pub fn refused(host: &dyn Host, credential: &str) -> bool {
    let (bytes, cas) = host.get_shared(CREDENTIAL_KEY);
    let held = bytes
        .as_deref()
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.split_once('\n'))
        .is_some_and(|(_, held)| held == credential);
    held && host.set_shared(CREDENTIAL_KEY, b"", cas).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;

    fn enrolled(credential: &str) -> Enrolled {
        Enrolled {
            proxy_id: "prx_a".into(),
            credential: credential.into(),
        }
    }

    #[test]
    fn an_identity_is_shared_until_refused() {
        let host = FakeHost::default();
        assert_eq!(current(&host), None);
        let first = enrolled(&format!("kgp_{}", "a".repeat(40)));
        assert!(store(&host, &first));
        assert_eq!(current(&host), Some(first.clone()));
        let second = enrolled(&format!("kgp_{}", "b".repeat(40)));
        assert!(store(&host, &second));
        assert!(
            !refused(&host, &first.credential),
            "a newer credential stays"
        );
        assert_eq!(current(&host), Some(second.clone()));
        assert!(refused(&host, &second.credential));
        assert_eq!(current(&host), None);
    }

    #[test]
    fn a_malformed_value_reads_as_none() {
        let host = FakeHost::default();
        host.set_shared(CREDENTIAL_KEY, b"prx_a\nnot-a-credential", None)
            .unwrap();
        assert_eq!(current(&host), None);
        host.set_shared(CREDENTIAL_KEY, &[0xff, b'\n'], None)
            .unwrap();
        assert_eq!(current(&host), None);
    }
}
