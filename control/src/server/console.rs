//! The web console (`console/`, embedded at build time by `build.rs`), served at `/console/` on
//! its own port (`serve --console-listen`).
//!
//! The console port serves the admin API too (the same router as `--listen`), so the page
//! and the API it calls share one origin: the Content-Security-Policy can say
//! `connect-src 'self'`, and no CORS is needed (the API answers no cross-origin browser call).
//! The page sends the management token as `Authorization: Bearer`, never as a cookie, so a
//! cross-site request carries no credential.

use crate::api::error::ApiError;
use crate::server::error::StartupError;
use crate::server::listener::{self, ConnectionLimits, Listener};
use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// One built file of the console: its path under `/console/` and its bytes.
pub struct Asset {
    pub path: &'static str,
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// Only this origin's scripts, styles, images and API; no inline code, no framing.
const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Vite names every file under `assets/` by a hash of its content: a new build is a new name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// index.html names the current hashed files, so the browser checks it every time.
const REVALIDATE: &str = "no-cache";

/// Binds `address` and serves the console and `api` there, under the same connection limits
/// (and TLS) as the API listener, in a task, until `shutting_down` turns true.
pub async fn start(
    address: &str,
    api: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutting_down: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, StartupError> {
    let tcp = TcpListener::bind(address)
        .await
        .map_err(|error| StartupError::Io(format!("cannot listen on {address}: {error}")))?;
    let bound = tcp
        .local_addr()
        .map_err(|error| StartupError::Io(format!("cannot read the bound address: {error}")))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("keygate-control console on {scheme}://{bound}/console/");
    let listener = Listener {
        name: "console",
        tcp,
        router: app(api),
        limits,
        tls,
    };
    Ok(tokio::spawn(listener::serve(listener, shutting_down)))
}

/// The console's routes beside `api`, every response with the security headers.
pub fn app(api: Router) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(|| async { asset("index.html") }))
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>| async move { asset(&path) }),
        )
        .merge(api)
        .layer(axum::middleware::map_response(with_security_headers))
}

fn asset(path: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.path == path) else {
        return ApiError::NotFound(format!("no console file {path:?}")).into_response();
    };
    let cache = if asset.path.starts_with("assets/") {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let headers = [
        (CONTENT_TYPE, content_type(asset.path)),
        (CACHE_CONTROL, cache),
    ];
    (headers, asset.bytes).into_response()
}

/// The media type of a built file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn with_security_headers(mut response: Response) -> Response {
    let headers: &mut HeaderMap = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 5] = [
        (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (REFERRER_POLICY, "no-referrer"),
        (X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_console_is_embedded_with_hashed_assets() {
        let index = ASSETS.iter().find(|a| a.path == "index.html").unwrap();
        let index = std::str::from_utf8(index.bytes).unwrap();
        let scripts: Vec<&Asset> = ASSETS
            .iter()
            .filter(|a| a.path.starts_with("assets/") && a.path.ends_with(".js"))
            .collect();
        assert!(!scripts.is_empty());
        for script in scripts {
            assert!(index.contains(&format!("/console/{}", script.path)));
        }
        assert!(
            !index.contains("<script>"),
            "no inline script: the CSP forbids it"
        );
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("assets/a-1.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("assets/a-1.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }
}
