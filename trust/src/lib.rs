//! Trusting a private CA for HTTPS calls to the control service, defined once for its two
//! clients: the CLI (`--ca-cert`, `KEYGATE_CA_CERT`) and the native filter's background thread
//! (`control.ca_file`). Only the CA certificates of one PEM file are trusted, none of the
//! public web roots; the certificate must name the URL's host, as any HTTPS client checks.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// A TLS client configuration trusting only the CA certificates in the PEM file at `path`. The
/// error says what is wrong with the file, for the caller to name the setting that gave it.
pub fn trusting(path: &Path) -> Result<Arc<ClientConfig>, String> {
    let pem = std::fs::read(path).map_err(|error| error.to_string())?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|error| format!("not PEM: {error}"))?;
        roots
            .add(cert)
            .map_err(|error| format!("not a CA certificate: {error}"))?;
    }
    if roots.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// rustls' ring provider: the one ureq's TLS and the control service are built with. Its
/// deprecation asks for the post-quantum key exchange of aws-lc-rs, which needs cmake to build.
#[allow(deprecated)]
pub fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_or_no_file_is_an_error() {
        let path = std::env::temp_dir().join(format!("keygate-trust-{}.pem", std::process::id()));
        std::fs::write(&path, "nothing here").unwrap();
        assert_eq!(trusting(&path).unwrap_err(), "holds no PEM certificate");
        std::fs::remove_file(&path).unwrap();
        assert!(trusting(&path).unwrap_err().contains("No such file"));
    }
}
