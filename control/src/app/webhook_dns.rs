//! Name resolution for webhook deliveries that refuses what a webhook must not reach
//! (`domain::webhook_url`): every address a name resolves to is checked, and one refused address
//! refuses them all. The HTTP client connects only to addresses this returned, so a name cannot
//! pass the check and then resolve elsewhere for the connection (DNS rebinding).

use crate::domain::webhook_url::{check_address, check_url, UrlPolicy};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// Resolves `host:port` and checks every address.
pub fn resolve_checked(netloc: &str, policy: UrlPolicy) -> io::Result<Vec<SocketAddr>> {
    let addresses: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
    if addresses.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{netloc} resolves to no address"),
        ));
    }
    for address in &addresses {
        check_address(address.ip(), policy)
            .map_err(|message| io::Error::new(io::ErrorKind::PermissionDenied, message))?;
    }
    Ok(addresses)
}

/// Checks a webhook URL's form and every address its host resolves to now.
pub fn check_resolves(url: &str, policy: UrlPolicy) -> Result<(), String> {
    let url = check_url(url, policy)?;
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    // `host_str` keeps IPv6 brackets, as `to_socket_addrs` wants them.
    resolve_checked(&format!("{host}:{port}"), policy)
        .map(drop)
        .map_err(|error| match error.kind() {
            io::ErrorKind::PermissionDenied => error.to_string(),
            _ => format!("cannot resolve {host}: {error}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_literals_are_refused_unless_allowed() {
        let strict = UrlPolicy::default();
        for url in [
            "https://localhost:8443/hook",
            "https://127.0.0.1/hook",
            "https://[::1]/hook",
        ] {
            let error = check_resolves(url, strict).unwrap_err();
            assert!(error.contains("loopback"), "{url}: {error}");
        }
        let local = UrlPolicy {
            allow_private: true,
        };
        assert!(check_resolves("http://localhost:9/hook", local).is_ok());
        assert!(check_resolves("https://name.invalid/hook", local).is_err());
    }
}
