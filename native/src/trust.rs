//! What the background thread's client trusts for `https://` control URLs: the public web
//! roots ureq carries, or only the CA certificates of `control.ca_file` (a private CA, as
//! `scripts/dev-pki.sh` and the compose files' `pki` service make). The certificate must name
//! the URL's host, as any HTTPS client checks.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// A TLS configuration trusting only the CA certificates in the PEM file at `path`; the error
/// says what is wrong with the file.
pub fn trusting(path: &str) -> Result<Arc<ClientConfig>, String> {
    let pem = std::fs::read(path).map_err(|error| format!("{path}: {error}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|error| format!("{path}: not PEM: {error}"))?;
        roots
            .add(cert)
            .map_err(|error| format!("{path}: not a CA certificate: {error}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{path}: holds no PEM certificate"));
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// rustls' ring provider, the one ureq's TLS is built with (it needs only a C compiler; the
/// post-quantum key exchange its deprecation asks for is aws-lc-rs's, which needs cmake).
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_or_no_file_is_an_error() {
        let path =
            std::env::temp_dir().join(format!("keygate-native-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "nothing here").unwrap();
        let path = path.to_str().unwrap().to_string();
        assert!(trusting(&path)
            .unwrap_err()
            .ends_with("holds no PEM certificate"));
        std::fs::remove_file(&path).unwrap();
        assert!(trusting(&path).unwrap_err().starts_with(&path));
    }
}
