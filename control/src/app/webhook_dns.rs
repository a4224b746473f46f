//! Name resolution for webhook deliveries that refuses what a webhook must not reach
//! (`domain::webhook_url`): every address a name resolves to is checked, and one refused address
//! refuses them all. The HTTP client connects only to addresses this returned, so a name cannot
//! pass the check and then resolve elsewhere for the connection (DNS rebinding).

use crate::domain::webhook_url::{check_address, check_url, UrlPolicy};
use crate::domain::webhooks::excerpt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

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

/// Resolves and checks `netloc` on a thread of its own, waiting at most `timeout`: the system
/// resolver has no deadline of ours, and an attempt must end within its lease.
pub fn resolve_within(
    netloc: String,
    policy: UrlPolicy,
    timeout: std::time::Duration,
) -> Result<Vec<SocketAddr>, String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let lookup = std::thread::Builder::new()
        .name("webhook-dns".into())
        .spawn(move || {
            let _ = sender.send(resolve_checked(&netloc, policy));
        });
    if let Err(error) = lookup {
        return Err(format!("cannot start a name lookup: {error}"));
    }
    match receiver.recv_timeout(timeout) {
        Ok(Ok(addresses)) => Ok(addresses),
        Ok(Err(error)) => Err(excerpt(&error.to_string())),
        Err(_) => Err(format!(
            "name lookup took longer than {}s",
            timeout.as_secs()
        )),
    }
}

/// How long saving an endpoint waits for its name to resolve.
pub const SAVE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks a webhook URL's form and every address its host resolves to now (waiting at most
/// [`SAVE_LOOKUP_TIMEOUT`]).
pub fn check_resolves(url: &str, policy: UrlPolicy) -> Result<(), String> {
    let url = check_url(url, policy)?;
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    // `host_str` keeps IPv6 brackets, as `to_socket_addrs` wants them.
    resolve_within(format!("{host}:{port}"), policy, SAVE_LOOKUP_TIMEOUT).map(drop)
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
