//! The client's trust for an https `--url`: the public web roots ureq carries, or only the
//! private CA `--ca-cert` (`KEYGATE_CA_CERT`) names.

use crate::cli::client::error::ClientError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// A TLS configuration that trusts only the CA certificates of the PEM file `ca_cert`.
pub fn trusting(ca_cert: &Path) -> Result<Arc<ClientConfig>, ClientError> {
    let usage = |problem: String| {
        ClientError::Usage(format!(
            "--ca-cert (or KEYGATE_CA_CERT) {}: {problem}",
            ca_cert.display()
        ))
    };
    let pem = std::fs::read(ca_cert).map_err(|error| usage(error.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|error| usage(format!("not PEM: {error}")))?;
        roots
            .add(cert)
            .map_err(|error| usage(format!("not a CA certificate: {error}")))?;
    }
    if roots.is_empty() {
        return Err(usage("holds no PEM certificate".into()));
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| usage(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// rustls' ring provider, as the service uses (control/src/server/tls.rs says why ring).
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_a_usage_error() {
        let path = std::env::temp_dir().join(format!("keygate-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "nothing here").unwrap();
        let error = trusting(&path).unwrap_err().to_string();
        assert!(error.ends_with("holds no PEM certificate"), "{error}");
        std::fs::remove_file(&path).unwrap();
        let error = trusting(&path).unwrap_err().to_string();
        assert!(
            error.starts_with("--ca-cert (or KEYGATE_CA_CERT)"),
            "{error}"
        );
    }
}
