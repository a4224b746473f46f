//! The best case of the usual alternative to Keygate: an `ext_authz` HTTP authorizer that holds
//! every key's SHA-256 in a hash map. Envoy forwards the request's headers; the answer is 200
//! (allow) or 401 (deny). Bench-only: no config reload, no scopes, no logging on the hot path.
//!
//! Usage: keygate-bench-authz --listen 127.0.0.1:PORT --secrets FILE [--threads N]
//! FILE holds one secret per line (what `keygate-control seed --secrets-out` writes).

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

type KeySet = HashSet<[u8; 32]>;

struct Args {
    listen: SocketAddr,
    secrets: String,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut secrets = None;
    let mut threads = 2;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag}: missing value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().map_err(|e| format!("--listen: {e}"))?),
            "--secrets" => secrets = Some(value),
            "--threads" => threads = value.parse().map_err(|e| format!("--threads: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        secrets: secrets.ok_or("--secrets is required")?,
        threads,
    })
}

fn load_keys(path: &str) -> Result<KeySet, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|secret| Sha256::digest(secret.as_bytes()).into())
        .collect())
}

fn decide(keys: &KeySet, request: &Request<Incoming>) -> StatusCode {
    let token = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    match token {
        Some(token) if keys.contains(&<[u8; 32]>::from(Sha256::digest(token))) => StatusCode::OK,
        _ => StatusCode::UNAUTHORIZED,
    }
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

async fn serve(listener: TcpListener, keys: Arc<KeySet>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let keys = Arc::clone(&keys);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let status = decide(&keys, &request);
                async move { Ok::<_, Infallible>(reply(status)) }
            });
            // HTTP/1.1 keep-alive: what Envoy's ext_authz cluster speaks by default.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("keygate-bench-authz: {error}");
            std::process::exit(2);
        }
    };
    let keys = match load_keys(&args.secrets) {
        Ok(keys) => Arc::new(keys),
        Err(error) => {
            eprintln!("keygate-bench-authz: {error}");
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("keygate-bench-authz: runtime: {error}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async {
        let listener = match TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("keygate-bench-authz: {}: {error}", args.listen);
                std::process::exit(1);
            }
        };
        println!(
            "keygate-bench-authz listening on http://{} with {} keys",
            args.listen,
            keys.len()
        );
        serve(listener, keys).await;
    });
}
