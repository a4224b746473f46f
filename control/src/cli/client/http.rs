//! A small blocking client for the admin API. Every answer is checked to be Keygate's
//! (`answers::read`); the service's error answers come back as their message.

use crate::cli::client::answers::{self, Answer, Call, Reply, MAX_ANSWER_BYTES};
use crate::cli::client::error::ClientError;
use crate::cli::client::tls;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

const URL_EXAMPLE: &str = "write http(s)://HOST:PORT, e.g. http://127.0.0.1:8081";

/// The control service's base URL as `--url` or `KEYGATE_URL` gave it, made whole: a bare
/// `HOST:PORT` (or `HOST`) gets `http://`, a trailing `/` goes. Any scheme but http and https,
/// or a URL without a host or with a query, is refused with what to write instead.
pub fn base_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("the URL is empty; {URL_EXAMPLE}"));
    }
    let with_scheme = match text.split_once("://") {
        None => format!("http://{text}"),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => format!("http://{rest}"),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => format!("https://{rest}"),
        Some((scheme, _)) => {
            return Err(format!("{scheme}:// is not supported; {URL_EXAMPLE}"));
        }
    };
    let url = url::Url::parse(&with_scheme)
        .map_err(|error| format!("not a URL ({error}); {URL_EXAMPLE}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("the URL has no host; {URL_EXAMPLE}"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "the URL must not have a query or fragment; {URL_EXAMPLE}"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "the URL must not carry a user or password (the token goes in --token); \
             {URL_EXAMPLE}"
        ));
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

pub struct AdminClient {
    agent: ureq::Agent,
    base_url: String,
    token: String,
}

impl AdminClient {
    /// A client of `base_url`; an https one trusts only `ca_cert` when given.
    pub fn new(base_url: &str, token: String, ca_cert: Option<&Path>) -> Result<Self, ClientError> {
        let mut agent = ureq::AgentBuilder::new().timeout(TIMEOUT);
        if let Some(ca_cert) = ca_cert {
            agent = agent.tls_config(tls::trusting(ca_cert)?);
        }
        Ok(AdminClient {
            agent: agent.build(),
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
        })
    }

    pub fn get<T: Reply>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        let mut request = self.request("GET", path);
        for (name, value) in query {
            request = request.query(name, value);
        }
        read(self.call("GET", path), request.call())
    }

    pub fn post<T: Reply>(&self, path: &str, body: &Value) -> Result<T, ClientError> {
        let result = self.request("POST", path).send_json(body);
        read(self.call("POST", path), result)
    }

    pub fn patch<T: Reply>(&self, path: &str, body: &Value) -> Result<T, ClientError> {
        let result = self.request("PATCH", path).send_json(body);
        read(self.call("PATCH", path), result)
    }

    pub fn delete<T: Reply>(&self, path: &str) -> Result<T, ClientError> {
        let result = self.request("DELETE", path).call();
        read(self.call("DELETE", path), result)
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.agent
            .request(method, &format!("{}{path}", self.base_url))
            .set("Authorization", &format!("Bearer {}", self.token))
    }

    fn call<'a>(&'a self, method: &'a str, path: &'a str) -> Call<'a> {
        Call {
            base_url: &self.base_url,
            method,
            path,
        }
    }
}

fn read<T: Reply>(
    call: Call,
    result: Result<ureq::Response, ureq::Error>,
) -> Result<T, ClientError> {
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(transport)) => {
            return Err(ClientError::Unreachable(format!(
                "cannot reach the control service: {transport}"
            )))
        }
    };
    let status = response.status();
    let media_type = response.header("content-type").map(answers::media_type);
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_ANSWER_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|error| {
            ClientError::Unreachable(format!(
                "cannot read the answer of {} to {} {}: {error}",
                call.base_url, call.method, call.path
            ))
        })?;
    let answer = Answer {
        status,
        media_type,
        body,
    };
    answers::read(call, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_get_a_scheme_and_lose_a_trailing_slash() {
        let cases = [
            ("localhost:8081", "http://localhost:8081"),
            ("127.0.0.1:8081/", "http://127.0.0.1:8081"),
            ("HTTP://example.test", "http://example.test"),
            ("http://[::1]:8081/keygate/", "http://[::1]:8081/keygate"),
            (" control.internal ", "http://control.internal"),
            (
                "HTTPS://control.internal:8443/",
                "https://control.internal:8443",
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(base_url(given).as_deref(), Ok(expected), "{given}");
        }
    }

    #[test]
    fn unusable_urls_say_what_to_write() {
        let cases = [
            ("", "the URL is empty"),
            ("ftp://example.test", "ftp:// is not supported"),
            ("http://", "host"),
            ("http://:8081", "host"),
            ("localhost:8081?x=1", "must not have a query"),
            (
                "http://admin:secret@localhost",
                "must not carry a user or password",
            ),
            ("local host:8081", "not a URL"),
        ];
        for (given, expected) in cases {
            let error = base_url(given).unwrap_err();
            assert!(error.contains(expected), "{given}: {error}");
            assert!(error.ends_with(URL_EXAMPLE), "{given}: {error}");
        }
    }
}
