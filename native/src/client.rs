//! The background thread's HTTP calls to the control service: what the Wasm build asks of
//! Envoy's `httpCall`, made with our own client (ureq) on a short-lived thread per call, so a
//! long poll (up to `control.long_poll_wait`) holds neither an Envoy thread nor the other jobs.

use std::io::Read;
use std::time::Duration;

/// The most of an answer's body that is read: a full snapshot page of 50,000 keys is about
/// 12 MB; anything larger is not an answer of ours.
pub const MAX_BODY_BYTES: u64 = 64 << 20;

/// One call, as `sync::task` builds it for `Host::start_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    pub url: String,
    /// Request headers without the pseudo-headers.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// What came back: `status` is `None` when the call ended without an HTTP answer (refused,
/// reset, timed out), as Envoy reports a failed `httpCall`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub token: u32,
    pub status: Option<u32>,
    pub body: Vec<u8>,
}

/// The call a job asked for, or `None` when it lacks `:method` or `:path` (Envoy's
/// `BadArgument`). Pseudo-headers become the method and the URL under `base_url`; `:authority`
/// is the URL's host, as Envoy's cluster would make it.
pub fn call_of(
    base_url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Option<Call> {
    let pseudo = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let method = pseudo(":method")?;
    let path = pseudo(":path").filter(|path| path.starts_with('/'))?;
    Some(Call {
        method: method.to_string(),
        url: format!("{base_url}{path}"),
        headers: headers
            .iter()
            .filter(|(name, _)| !name.starts_with(':'))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        body: body.map(<[u8]>::to_vec),
        timeout,
    })
}

/// Makes `call`; its answer carries `token`.
pub fn perform(agent: &ureq::Agent, token: u32, call: Call) -> Answer {
    let mut request = agent.request(&call.method, &call.url).timeout(call.timeout);
    for (name, value) in &call.headers {
        request = request.set(name, value);
    }
    let result = match &call.body {
        Some(body) => request.send_bytes(body),
        None => request.call(),
    };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => Some(response),
        Err(ureq::Error::Transport(_)) => None,
    };
    match response {
        Some(response) => {
            let status = u32::from(response.status());
            let mut body = Vec::new();
            // One byte more than the most: a body that long is not an answer of ours, and is
            // no answer, as Envoy refuses a response over its buffer limit.
            match response
                .into_reader()
                .take(MAX_BODY_BYTES + 1)
                .read_to_end(&mut body)
            {
                Ok(read) if read as u64 <= MAX_BODY_BYTES => Answer {
                    token,
                    status: Some(status),
                    body,
                },
                // The body broke off or was too long: no answer, as a reset stream is in Envoy.
                _ => Answer {
                    token,
                    status: None,
                    body: Vec::new(),
                },
            }
        }
        None => Answer {
            token,
            status: None,
            body: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_headers_make_the_method_and_url() {
        let call = call_of(
            "http://127.0.0.1:9",
            &[
                (":method", "POST"),
                (":path", "/v1/usage?x=1"),
                (":authority", "keygate_control"),
                ("authorization", "Bearer t"),
            ],
            Some(b"{}"),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(call.method, "POST");
        assert_eq!(call.url, "http://127.0.0.1:9/v1/usage?x=1");
        assert_eq!(
            call.headers,
            vec![("authorization".to_string(), "Bearer t".to_string())]
        );
        assert_eq!(call.body.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn a_call_without_method_or_path_is_refused() {
        let timeout = Duration::from_secs(1);
        assert_eq!(call_of("http://h", &[(":path", "/x")], None, timeout), None);
        assert_eq!(
            call_of("http://h", &[(":method", "GET")], None, timeout),
            None
        );
        assert_eq!(
            call_of(
                "http://h",
                &[(":method", "GET"), (":path", "x")],
                None,
                timeout
            ),
            None
        );
    }

    #[test]
    fn a_refused_connection_is_an_answer_without_status() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let call = call_of(
            &format!("http://127.0.0.1:{port}"),
            &[(":method", "GET"), (":path", "/v1/snapshot")],
            None,
            Duration::from_secs(2),
        )
        .unwrap();
        let answer = perform(&ureq::Agent::new(), 7, call);
        assert_eq!(answer.token, 7);
        assert_eq!(answer.status, None);
    }
}

#[cfg(test)]
mod answered {
    use super::*;
    use std::io::Write;

    /// A one-shot server that answers one request with `response` and hands back what it read.
    fn serve_once(response: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers and the 2-byte body of the test's POST.
            while !request.ends_with(b"{}") {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "client closed early");
                request.extend_from_slice(&chunk[..n]);
            }
            stream.write_all(response).unwrap();
            request
        });
        (base, handle)
    }

    #[test]
    fn an_error_status_is_an_answer_with_its_body() {
        let (base, server) = serve_once(
            b"HTTP/1.1 409 Conflict\r\ncontent-length: 5\r\nconnection: close\r\n\r\nstale",
        );
        let call = call_of(
            &base,
            &[(":method", "POST"), (":path", "/v1/usage"), ("x-a", "1")],
            Some(b"{}"),
            Duration::from_secs(5),
        )
        .unwrap();
        let answer = perform(&ureq::Agent::new(), 3, call);
        assert_eq!(answer.status, Some(409));
        assert_eq!(answer.body, b"stale");
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(
            request.starts_with("POST /v1/usage HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.to_ascii_lowercase().contains("x-a: 1\r\n"),
            "{request}"
        );
    }
}
