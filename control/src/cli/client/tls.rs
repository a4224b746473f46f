//! The client's trust for an https `--url`: the public web roots ureq carries, or only the
//! private CA `--ca-cert` (`KEYGATE_CA_CERT`) names (`keygate_trust`, which the native
//! filter's `control.ca_file` uses too).

use crate::cli::client::error::ClientError;
use rustls::ClientConfig;
use std::path::Path;
use std::sync::Arc;

/// A TLS configuration that trusts only the CA certificates of the PEM file `ca_cert`.
pub fn trusting(ca_cert: &Path) -> Result<Arc<ClientConfig>, ClientError> {
    keygate_trust::trusting(ca_cert).map_err(|problem| {
        ClientError::Usage(format!(
            "--ca-cert (or KEYGATE_CA_CERT) {}: {problem}",
            ca_cert.display()
        ))
    })
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
