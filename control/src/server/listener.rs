//! Serving one listener (`--listen` or `--console-listen`) with hyper directly, so that a
//! hostile or broken client cannot hold the service's connections: a cap on open connections
//! (over it, a new connection is closed at once, unserved), the header and idle deadlines of
//! `server/clock.rs`, the body deadline (`--body-timeout`, applied where the API reads a
//! body), and TLS when configured. Closed and refused connections are counted and logged
//! every [`REPORT_INTERVAL`] (counts only: nothing a client sent).

use crate::api::extract::BodyReadTimeout;
use crate::server::clock::{ClockLimits, ConnectionClock, Expiry};
use crate::server::unread_body;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long a closing connection (idle, or the service stopping) may take to finish what it
/// is answering before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// A failed `accept` (out of file descriptors, say) is retried after this pause.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often the counts of refused and timed-out connections are logged (when not zero).
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What every connection of a listener is held to.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub clock: ClockLimits,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

/// A bound listener and what it serves.
pub struct Listener {
    /// "API" or "console", for the log.
    pub name: &'static str,
    pub tcp: TcpListener,
    pub router: Router,
    pub limits: ConnectionLimits,
    pub tls: Option<TlsAcceptor>,
}

/// Connections closed by the service rather than by the client, since the last report.
#[derive(Debug, Default)]
struct ClosedCounts {
    over_cap: AtomicU64,
    slow_headers: AtomicU64,
    failed_handshakes: AtomicU64,
}

impl ClosedCounts {
    /// One log line of what was closed, or `None` when nothing was; resets the counts.
    fn take_report(&self, name: &str, limits: &ConnectionLimits) -> Option<String> {
        let over_cap = self.over_cap.swap(0, Ordering::Relaxed);
        let slow_headers = self.slow_headers.swap(0, Ordering::Relaxed);
        let failed_handshakes = self.failed_handshakes.swap(0, Ordering::Relaxed);
        let mut parts = Vec::new();
        if over_cap > 0 {
            parts.push(format!(
                "refused {over_cap} over --max-connections {}",
                limits.max_connections
            ));
        }
        if slow_headers > 0 {
            parts.push(format!(
                "closed {slow_headers} whose request headers took over --header-timeout {:?}",
                limits.clock.header_timeout
            ));
        }
        if failed_handshakes > 0 {
            parts.push(format!("{failed_handshakes} failed TLS handshakes"));
        }
        (!parts.is_empty()).then(|| format!("{name} listener connections: {}", parts.join(", ")))
    }
}

/// What every connection task of one listener shares.
struct Shared {
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    closed: ClosedCounts,
    http: auto::Builder<TokioExecutor>,
}

/// Accepts and serves until `shutting_down` turns true, then lets open connections finish
/// (each within [`CLOSE_GRACE`]).
pub async fn serve(listener: Listener, mut shutting_down: watch::Receiver<bool>) {
    let Listener {
        name,
        tcp,
        router,
        limits,
        tls,
    } = listener;
    let mut http = auto::Builder::new(TokioExecutor::new());
    // Our clock (server/clock.rs) times headers on both protocols; hyper's would also close
    // kept-alive connections after the header timeout.
    http.http1().header_read_timeout(None);
    let shared = Arc::new(Shared {
        router,
        limits,
        tls,
        closed: ClosedCounts::default(),
        http,
    });
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let reporter = tokio::spawn(report_closed(Arc::clone(&shared), name));
    loop {
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            _ = shutting_down.wait_for(|stopping| *stopping) => break,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => (stream, peer),
            Err(error) if is_per_connection(&error) => continue,
            Err(error) => {
                eprintln!("{name} listener: accept failed, retrying: {error}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            shared.closed.over_cap.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        // Small answers go out at once rather than waiting for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            permit,
            Arc::clone(&shared),
            shutting_down.clone(),
        ));
    }
    drop(tcp);
    // Every permit back means every connection has ended; each is bounded by CLOSE_GRACE.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(CLOSE_GRACE * 2, open.acquire_many(all)).await;
    reporter.abort();
    if let Some(report) = shared.closed.take_report(name, &shared.limits) {
        println!("{report}");
    }
}

/// Errors of one incoming connection (reset before it was accepted), not of the listener.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

async fn report_closed(shared: Arc<Shared>, name: &'static str) {
    let mut every = tokio::time::interval(REPORT_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Some(report) = shared.closed.take_report(name, &shared.limits) {
            println!("{report}");
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    mut shutting_down: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new(Instant::now()));
    let stream = WatchedStream {
        stream,
        activity: Arc::clone(&activity),
    };
    let clock = shared.limits.clock;
    match &shared.tls {
        None => drive(stream, peer, activity, &shared, shutting_down).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                handshake = acceptor.accept(stream) => handshake,
                _ = activity.expired(clock) => {
                    shared.closed.slow_headers.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                _ = shutting_down.wait_for(|stopping| *stopping) => return,
            };
            match handshake {
                Ok(tls) => drive(tls, peer, activity, &shared, shutting_down).await,
                Err(_) => {
                    shared
                        .closed
                        .failed_handshakes
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2 (by ALPN or the client's preface) on `io` until the client
/// closes, a deadline of the connection's clock passes, or the service stops.
async fn drive<I>(
    io: I,
    peer: SocketAddr,
    activity: Arc<Activity>,
    shared: &Shared,
    mut shutting_down: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = shared.router.clone();
    let body_timeout = BodyReadTimeout(shared.limits.body_timeout);
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let in_flight = InFlight::start(Arc::clone(&requests));
        request.extensions_mut().insert(body_timeout);
        // The TCP peer, for the handlers that need the client's address (the token endpoint).
        request.extensions_mut().insert(ConnectInfo(peer));
        let version = request.version();
        let (request, body_read) = unread_body::watch(request);
        let router = router.clone();
        async move {
            let mut response = router.oneshot(request).await?;
            body_read.mark(version, &mut response);
            Ok::<_, std::convert::Infallible>(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        }
    });
    let connection = shared.http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let expiry = tokio::select! {
        _ = connection.as_mut() => return,
        expiry = activity.expired(shared.limits.clock) => Some(expiry),
        _ = shutting_down.wait_for(|stopping| *stopping) => None,
    };
    if expiry == Some(Expiry::SlowHeaders) {
        // Nothing is being answered: dropping the connection closes it.
        shared.closed.slow_headers.fetch_add(1, Ordering::Relaxed);
        return;
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
}

/// One connection's clock, fed by its stream and its requests, and the wake-up of the task
/// that waits for its deadline.
struct Activity {
    clock: Mutex<ConnectionClock>,
    changed: Notify,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Activity {
            clock: Mutex::new(ConnectionClock::opened(now)),
            changed: Notify::new(),
        }
    }

    fn update<T>(&self, change: impl FnOnce(&mut ConnectionClock) -> T) -> T {
        let mut clock = self.clock.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut clock)
    }

    fn bytes_arrived(&self) {
        if self.update(|clock| clock.bytes_arrived(Instant::now())) {
            self.changed.notify_one();
        }
    }

    /// Resolves when the connection's deadline has passed, with why. Each turn of the loop
    /// waits for the deadline or a change of it, so it only turns as the connection is used.
    async fn expired(&self, limits: ClockLimits) -> Expiry {
        loop {
            match self.update(|clock| clock.deadline(limits)) {
                None => self.changed.notified().await,
                Some((at, expiry)) => {
                    if Instant::now() >= at {
                        return expiry;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// A request being answered, from its headers to the end of its response body.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.update(ConnectionClock::request_started);
        activity.changed.notify_one();
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .update(|clock| clock.request_finished(Instant::now()));
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its request counted as in flight until it is sent.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The TCP stream, telling the clock when bytes arrive.
struct WatchedStream {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            clock: ClockLimits {
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(90),
            },
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }

    #[test]
    fn reports_name_what_was_closed_and_reset() {
        let closed = ClosedCounts::default();
        assert_eq!(closed.take_report("API", &limits()), None);
        closed.over_cap.fetch_add(3, Ordering::Relaxed);
        closed.slow_headers.fetch_add(60, Ordering::Relaxed);
        let report = closed.take_report("API", &limits()).unwrap();
        assert_eq!(
            report,
            "API listener connections: refused 3 over --max-connections 4096, \
             closed 60 whose request headers took over --header-timeout 10s"
        );
        assert_eq!(closed.take_report("API", &limits()), None);
    }

    #[tokio::test]
    async fn a_request_in_flight_holds_off_the_deadline_until_its_body_is_sent() {
        let activity = Arc::new(Activity::new(Instant::now()));
        let short = ClockLimits {
            header_timeout: Duration::from_millis(20),
            idle_timeout: Duration::from_millis(20),
        };
        let in_flight = InFlight::start(Arc::clone(&activity));
        let body = TrackedBody {
            body: Body::from("answer"),
            _in_flight: in_flight,
        };
        let waited = tokio::time::timeout(Duration::from_millis(100), activity.expired(short));
        assert!(waited.await.is_err(), "no deadline while answering");
        drop(body);
        let expiry = tokio::time::timeout(Duration::from_secs(5), activity.expired(short));
        assert_eq!(expiry.await.unwrap(), Expiry::Idle);
    }
}
