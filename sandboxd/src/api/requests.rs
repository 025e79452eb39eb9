//! Requests (HTTP/2 streams) open at once, counted per caller over all its
//! connections and in all. Each may hold a message being received, up to
//! the decoding limit, before any handler sees it: without this bound one
//! user could open streams on many connections and make the daemon buffer
//! gigabytes. A request past the bound is answered RESOURCE_EXHAUSTED
//! without its body being read; one taken holds its place until both its
//! body and its response are done with: a response built and not yet read
//! by its client (a whole List, say) counts too, so that a caller cannot
//! make the daemon hold more of them than of requests. The response is
//! handed on in pieces of at most [`PIECE`] bytes, as the connection has
//! room for them: what waits for a client that does not read stays with
//! the response, which keeps its place.

use crate::identity::Caller;
use crate::quota::{Quota, Slot};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{Bytes, Service};
use tonic::Status;

/// Requests one uid may have open at once: room for as many execs as
/// `limits.max_per_user` allows by default, and as many other calls.
pub const MAX_REQUESTS_PER_UID: usize = 128;
/// Requests all callers together may have open at once.
pub const MAX_REQUESTS: usize = 1024;
/// Most bytes of a response handed on at once: HTTP/2's default frame size.
const PIECE: usize = 16 << 10;

/// The layer that counts requests against a [`Quota`].
#[derive(Clone)]
pub struct RequestQuota(Arc<Quota>);

impl Default for RequestQuota {
    fn default() -> RequestQuota {
        RequestQuota(Quota::new(MAX_REQUESTS_PER_UID, MAX_REQUESTS))
    }
}

impl<S> tower::Layer<S> for RequestQuota {
    type Service = Quoted<S>;

    fn layer(&self, inner: S) -> Quoted<S> {
        Quoted {
            inner,
            quota: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone)]
pub struct Quoted<S> {
    inner: S,
    quota: Arc<Quota>,
}

impl<S> Service<Request<Body>> for Quoted<S>
where
    S: Service<Request<Held>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let Some(uid) = req.extensions().get::<Caller>().map(|c| c.uid) else {
            let status = Status::unauthenticated("no peer credentials on this connection");
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        match self.quota.take(uid) {
            Some(slot) => {
                let slot = Arc::new(slot);
                let held = Arc::clone(&slot);
                let response = self.inner.call(req.map(|body| Held { body, _slot: held }));
                Box::pin(async move {
                    let response = response.await?;
                    Ok(response.map(|body| {
                        Body::new(Sending {
                            body,
                            rest: Bytes::new(),
                            _slot: slot,
                        })
                    }))
                })
            }
            None => {
                let (max, total) = (self.quota.max(), self.quota.total());
                tracing::warn!(
                    uid,
                    "request refused: {max} of this uid, or {total} in all, are open"
                );
                let status = Status::resource_exhausted(format!(
                    "too many requests open: {max} for uid {uid}, or {total} in all"
                ));
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// A request's body, holding its place until dropped.
pub struct Held {
    body: Body,
    _slot: Arc<Slot>,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A response's body, handed on in pieces, holding its request's place
/// until dropped.
struct Sending {
    body: Body,
    /// What is left of the data frame being handed on.
    rest: Bytes,
    _slot: Arc<Slot>,
}

impl http_body::Body for Sending {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        if self.rest.is_empty() {
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                other => return other,
            };
            match frame.into_data() {
                Ok(data) => self.rest = data,
                Err(frame) => return Poll::Ready(Some(Ok(frame))),
            }
        }
        let n = self.rest.len().min(PIECE);
        let piece = self.rest.split_to(n);
        Poll::Ready(Some(Ok(http_body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }
}
