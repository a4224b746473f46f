//! `Connection: close` on an HTTP/1.1 answer given before its request's body was read.
//!
//! Why: a handler may answer without reading the body (a 401 before the JSON is parsed, a 405
//! for an unknown method). hyper then closes the connection after the answer, since the rest
//! of the body is still on the wire, but it decides that only after the answer's headers went
//! out without `Connection: close`. A client that reuses the kept-alive connection in that
//! moment sends its next request into a closing socket ("Remote end closed connection
//! without response": seen from schemathesis in CI). Saying `close` in the answer tells the
//! client not to reuse it (RFC 9112 §9.6).

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONNECTION};
use hyper::{Request, Response, Version};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Whether a request's body has been read to its end (or had none).
#[derive(Clone)]
pub struct BodyRead(Arc<AtomicBool>);

impl BodyRead {
    /// Marks `response` to close the connection when the body of its HTTP/1 request was left
    /// unread. HTTP/2 streams end on their own, and forbid the header.
    pub fn mark<B>(&self, version: Version, response: &mut Response<B>) {
        let http1 = matches!(version, Version::HTTP_10 | Version::HTTP_11);
        if http1 && !self.0.load(Ordering::Acquire) {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// `request` with its body watched, and the flag that says whether it was read.
pub fn watch(request: Request<Incoming>) -> (Request<Body>, BodyRead) {
    let read = BodyRead(Arc::new(AtomicBool::new(hyper::body::Body::is_end_stream(
        request.body(),
    ))));
    let flag = read.clone();
    let request = request.map(|body| Body::new(WatchedBody { body, read: flag }));
    (request, read)
}

struct WatchedBody {
    body: Incoming,
    read: BodyRead,
}

impl hyper::body::Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.read.0.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
