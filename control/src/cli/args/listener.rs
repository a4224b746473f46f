//! `serve`'s connection options: how long a client may take, how many connections a listener
//! holds, and the certificate for TLS. Both listeners (`--listen`, `--console-listen`) use them.

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// The defaults, as the flags' help and docs/operations.md state them.
pub const DEFAULT_HEADER_TIMEOUT: &str = "10s";
pub const DEFAULT_BODY_TIMEOUT: &str = "30s";
pub const DEFAULT_IDLE_TIMEOUT: &str = "90s";
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4096;

/// The longest any of the timeouts may be set to: a day.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Args)]
pub struct ListenerArgs {
    /// Time a client has to send a request's headers: from connecting (TLS handshake included)
    /// to its first request, and from its first byte of each later one. Slower: closed.
    #[arg(long, env = "KEYGATE_HEADER_TIMEOUT", value_name = "DURATION",
          default_value = DEFAULT_HEADER_TIMEOUT, value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Time a client has to send a request body once the service reads it; slower: 408.
    #[arg(long, env = "KEYGATE_BODY_TIMEOUT", value_name = "DURATION",
          default_value = DEFAULT_BODY_TIMEOUT, value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed. A request being
    /// answered (a snapshot long poll included) is never idle.
    #[arg(long, env = "KEYGATE_IDLE_TIMEOUT", value_name = "DURATION",
          default_value = DEFAULT_IDLE_TIMEOUT, value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Open connections each listener holds; one more is closed at once, unserved.
    #[arg(long, env = "KEYGATE_MAX_CONNECTIONS", value_name = "COUNT",
          default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); re-read on SIGHUP and when
    /// the file changes. Needs --tls-key.
    #[arg(
        long,
        env = "KEYGATE_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(
        long,
        env = "KEYGATE_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

/// `250ms`, `10s`, `2m`, `1h`, or a bare number of seconds; more than zero, at most a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: write a duration such as 500ms, 10s, 2m or 1h"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m or h)")),
    };
    let in_range = seconds > 0.0 && seconds <= MAX_TIMEOUT.as_secs_f64();
    if !in_range {
        return Err(format!("{text:?}: must be more than 0 and at most 24h"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_their_units() {
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("10s", Duration::from_secs(10)),
            ("10", Duration::from_secs(10)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, expected) in [
            ("", "write a duration"),
            ("s", "write a duration"),
            ("10x", "unknown unit"),
            ("0s", "more than 0"),
            ("25h", "at most 24h"),
            ("1.2.3s", "write a duration"),
        ] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn the_defaults_parse() {
        for text in [
            DEFAULT_HEADER_TIMEOUT,
            DEFAULT_BODY_TIMEOUT,
            DEFAULT_IDLE_TIMEOUT,
        ] {
            assert!(parse_duration(text).is_ok(), "{text}");
        }
    }
}
