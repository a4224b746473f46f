//! One simulated proxy's connection to a control replica: HTTP/1.1 kept alive, one request at
//! a time, as the filter's `keygate_control` cluster connection carries its polls.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, IF_NONE_MATCH};
use hyper::http::request;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// What the filter sends as `Accept` (compact binary preferred, JSON understood).
pub const FILTER_ACCEPT: &str = "application/vnd.keygate.snapshot+binary, application/json;q=0.5";

/// Connecting is retried this many times (a listener's backlog can overflow for a moment when
/// thousands of proxies connect together).
const CONNECT_TRIES: u32 = 8;
const CONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The TCP connection or the HTTP handshake failed.
    Connect(String),
    /// The request could not be sent or its answer not read.
    Http(String),
    /// The answer was not a page this bench can read.
    Page(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Connect(error) => write!(f, "connect: {error}"),
            CallError::Http(error) => write!(f, "http: {error}"),
            CallError::Page(error) => write!(f, "page: {error}"),
        }
    }
}

/// A control replica: where it listens and the `Host` to send it.
#[derive(Debug, Clone)]
pub struct Replica {
    pub address: SocketAddr,
    pub authority: String,
}

impl Replica {
    /// `http://HOST:PORT` with a numeric host (the bench runs on loopback).
    pub fn parse(url: &str) -> Result<Replica, String> {
        let authority = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http://HOST:PORT URLs"))?
            .trim_end_matches('/');
        let address = authority
            .parse()
            .map_err(|error| format!("{url}: {error}"))?;
        Ok(Replica {
            address,
            authority: authority.to_string(),
        })
    }
}

/// An answer: status and the whole body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One kept-alive connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

impl Connection {
    /// Connects to `replica`, retrying a refused or reset connect a few times.
    pub async fn open(replica: &Replica) -> Result<Connection, CallError> {
        let mut tries = 0;
        let stream = loop {
            match TcpStream::connect(replica.address).await {
                Ok(stream) => break stream,
                Err(_) if tries + 1 < CONNECT_TRIES => {
                    tries += 1;
                    tokio::time::sleep(CONNECT_BACKOFF * tries).await;
                }
                Err(error) => return Err(CallError::Connect(error.to_string())),
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| CallError::Connect(error.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            authority: replica.authority.clone(),
        })
    }

    /// `GET path` as the filter asks for a snapshot page.
    pub async fn snapshot(
        &mut self,
        path: &str,
        token: &str,
        if_none_match: Option<&str>,
    ) -> Result<Answer, CallError> {
        let mut request = self
            .request(Method::GET, path, token)
            .header(ACCEPT, FILTER_ACCEPT);
        if let Some(tag) = if_none_match {
            request = request.header(IF_NONE_MATCH, tag);
        }
        self.send(request, Bytes::new()).await
    }

    /// A JSON request with the admin or sync token (`PATCH /v1/keys/{id}`, the counters).
    pub async fn json(
        &mut self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<String>,
    ) -> Result<Answer, CallError> {
        let request = self
            .request(method, path, token)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json");
        self.send(request, Bytes::from(body.unwrap_or_default()))
            .await
    }

    /// `POST path` of a fleet sync in the binary encoding, as the filter posts it;
    /// `changed_only` adds `keygate-sync-buckets: changed`.
    pub async fn fleet_sync(
        &mut self,
        path: &str,
        token: &str,
        body: Vec<u8>,
        changed_only: bool,
    ) -> Result<Answer, CallError> {
        use keygate_contract::fleet::{self, binary};
        let mut request = self
            .request(Method::POST, path, token)
            .header(ACCEPT, binary::ACCEPT)
            .header(CONTENT_TYPE, binary::MEDIA_TYPE);
        if changed_only {
            request = request.header(fleet::BUCKETS_HEADER, fleet::BUCKETS_CHANGED);
        }
        self.send(request, Bytes::from(body)).await
    }

    /// A request to this replica with `token` as its bearer.
    fn request(&self, method: Method, path: &str, token: &str) -> request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority)
            .header(AUTHORIZATION, format!("Bearer {token}"))
    }

    async fn send(&mut self, request: request::Builder, body: Bytes) -> Result<Answer, CallError> {
        let request = request
            .body(Full::new(body))
            .map_err(|error| CallError::Http(error.to_string()))?;
        self.sender
            .ready()
            .await
            .map_err(|error| CallError::Http(error.to_string()))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|error| CallError::Http(error.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| CallError::Http(error.to_string()))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}
