//! HTTPS on the listeners (`serve --tls-cert/--tls-key`): rustls with the ring provider,
//! HTTP/2 and HTTP/1.1 by ALPN, and a certificate that can be replaced while serving.
//!
//! Both listeners share one [`ReloadingCertificate`]; it is re-read on SIGHUP and whenever
//! the files' content changes (checked every [`FILE_CHECK_INTERVAL`]: a poll of two small
//! files rather than a file-watcher crate, because it also sees Kubernetes' symlink swaps of
//! mounted secrets and needs no platform API). A new pair that does not load (unreadable,
//! not PEM, key not matching the certificate) is refused: the current one keeps serving and
//! the reason is logged once.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// How often the certificate files are checked for a new content.
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Why a certificate pair was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateError {
    /// A file could not be read.
    Read { path: PathBuf, reason: String },
    /// The certificate file holds no PEM certificate, or a broken one.
    Certificates { path: PathBuf, reason: String },
    /// The key file holds no usable private key.
    Key { path: PathBuf, reason: String },
    /// The key is not the certificate's, or rustls refuses the pair.
    Pair(String),
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateError::Read { path, reason } => {
                write!(f, "cannot read {}: {reason}", path.display())
            }
            CertificateError::Certificates { path, reason } => {
                write!(f, "{}: no usable PEM certificate: {reason}", path.display())
            }
            CertificateError::Key { path, reason } => {
                write!(f, "{}: no usable PEM private key: {reason}", path.display())
            }
            CertificateError::Pair(reason) => {
                write!(f, "the key does not go with the certificate: {reason}")
            }
        }
    }
}

/// The certificate chain and key files `--tls-cert` and `--tls-key` name.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What set off a reload, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Hangup,
    FileCheck,
}

/// The certificate served now, and what is known about the files' content.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// SHA-256 of the served pair's file content (not the key itself: only what tells a
    /// change).
    content: [u8; 32],
    /// The content last refused, so that a broken pair is reported once, not every check.
    refused: Option<[u8; 32]>,
}

/// The current certificate, handed to every TLS handshake, replaced by [`Self::reload`].
#[derive(Debug)]
pub struct ReloadingCertificate {
    files: CertificateFiles,
    provider: Arc<CryptoProvider>,
    loaded: RwLock<Loaded>,
}

impl ReloadingCertificate {
    /// Loads the pair; an error here stops the service from starting.
    pub fn load(files: CertificateFiles) -> Result<Self, CertificateError> {
        let provider = Arc::new(ring_provider());
        let (cert_pem, key_pem) = read_pair(&files)?;
        let key = certified_key(&files, &cert_pem, &key_pem, &provider)?;
        Ok(ReloadingCertificate {
            loaded: RwLock::new(Loaded {
                key: Arc::new(key),
                content: digest(&cert_pem, &key_pem),
                refused: None,
            }),
            files,
            provider,
        })
    }

    /// Re-reads the files; serves the new pair if it changed and loads. A file check skips a
    /// content already refused; a SIGHUP tries again and reports again.
    pub fn reload(&self, trigger: Trigger) -> Result<bool, CertificateError> {
        let (cert_pem, key_pem) = read_pair(&self.files)?;
        let content = digest(&cert_pem, &key_pem);
        {
            let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
            let refused_before = loaded.refused == Some(content) && trigger == Trigger::FileCheck;
            if loaded.content == content || refused_before {
                return Ok(false);
            }
        }
        let outcome = certified_key(&self.files, &cert_pem, &key_pem, &self.provider);
        let mut loaded = self.loaded.write().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(key) => {
                *loaded = Loaded {
                    key: Arc::new(key),
                    content,
                    refused: None,
                };
                Ok(true)
            }
            Err(error) => {
                loaded.refused = Some(content);
                Err(error)
            }
        }
    }

    /// SHA-256 of the served leaf certificate, as `openssl x509 -fingerprint -sha256` shows it.
    pub fn fingerprint(&self) -> String {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        let leaf = loaded.key.cert.first().map(|cert| cert.as_ref());
        let hash = Sha256::digest(leaf.unwrap_or_default());
        hash.iter()
            .map(|byte| format!("{byte:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        Some(Arc::clone(&loaded.key))
    }
}

/// The listeners' TLS settings: the reloading certificate, safe default versions and
/// ciphers, no client certificates, and ALPN for HTTP/2 and HTTP/1.1.
pub fn server_config(
    certificate: Arc<ReloadingCertificate>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&certificate.provider))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reloads on SIGHUP and on a file change until the service stops, logging each outcome.
pub async fn keep_reloading(
    certificate: Arc<ReloadingCertificate>,
    mut shutting_down: watch::Receiver<bool>,
) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            eprintln!(
                "tls: cannot listen for SIGHUP ({error}); the files are still checked every {}s",
                FILE_CHECK_INTERVAL.as_secs()
            );
            None
        }
    };
    let mut file_checks = tokio::time::interval(FILE_CHECK_INTERVAL);
    file_checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let trigger = tokio::select! {
            _ = file_checks.tick() => Trigger::FileCheck,
            Some(()) = async {
                match hangups.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => Trigger::Hangup,
            _ = shutting_down.wait_for(|stopping| *stopping) => return,
        };
        match certificate.reload(trigger) {
            Ok(true) => println!(
                "tls: serving the new certificate from {} (sha256 {})",
                certificate.files.cert.display(),
                certificate.fingerprint()
            ),
            Ok(false) if trigger == Trigger::Hangup => {
                println!("tls: SIGHUP: the certificate files are unchanged")
            }
            Ok(false) => {}
            Err(error) => eprintln!("tls: keeping the current certificate: {error}"),
        }
    }
}

/// rustls' ring provider (see control/Cargo.toml for why ring): `keygate_trust`'s, the one
/// the CLI and the native filter call the service with. rustls 0.23.48 deprecates it for
/// lacking post-quantum key exchange (X25519MLKEM768, which only its aws-lc-rs provider
/// offers); the classical X25519 and P-256 groups it has are what the proxies negotiate today.
pub use keygate_trust::ring_provider;

fn read_pair(files: &CertificateFiles) -> Result<(Vec<u8>, Vec<u8>), CertificateError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|error| CertificateError::Read {
            path: path.clone(),
            reason: error.to_string(),
        })
    };
    Ok((read(&files.cert)?, read(&files.key)?))
}

fn digest(cert_pem: &[u8], key_pem: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((cert_pem.len() as u64).to_be_bytes());
    hasher.update(cert_pem);
    hasher.update(key_pem);
    hasher.finalize().into()
}

/// The chain and key of PEM files, checked to belong together.
fn certified_key(
    files: &CertificateFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, CertificateError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| CertificateError::Certificates {
            path: files.cert.clone(),
            reason: error.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertificateError::Certificates {
            path: files.cert.clone(),
            reason: "the file holds none".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| CertificateError::Key {
        path: files.key.clone(),
        reason: error.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|error| CertificateError::Pair(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_with(dir: &std::path::Path, cert: &[u8], key: &[u8]) -> CertificateFiles {
        let files = CertificateFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    #[test]
    fn unusable_files_say_which_and_why() {
        let dir = std::env::temp_dir().join(format!("keygate-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let error = ReloadingCertificate::load(files_with(&dir, b"not pem", b"")).unwrap_err();
        assert!(
            matches!(&error, CertificateError::Certificates { reason, .. } if reason == "the file holds none"),
            "{error}"
        );
        let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let error = ReloadingCertificate::load(files_with(&dir, broken, b"no key")).unwrap_err();
        assert!(matches!(error, CertificateError::Key { .. }), "{error}");
        let missing = CertificateFiles {
            cert: dir.join("absent.pem"),
            key: dir.join("absent.key"),
        };
        let error = ReloadingCertificate::load(missing).unwrap_err();
        assert!(error.to_string().starts_with("cannot read "), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_content_digest_tells_which_file_changed() {
        assert_ne!(digest(b"ab", b"c"), digest(b"a", b"bc"));
        assert_eq!(digest(b"a", b"b"), digest(b"a", b"b"));
    }
}
