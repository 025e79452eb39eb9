//! Requests (HTTP/2 streams) open at once, counted per caller over all its
//! connections and in all. Each may hold a message being received, up to
//! the decoding limit, before any handler sees it: without this bound one
//! user could open streams on many connections and make the daemon buffer
//! gigabytes. A request past the bound is answered RESOURCE_EXHAUSTED
//! without its body being read; one taken holds its place until its body
//! is dropped (for Exec, when the exec's input ends).

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
            Some(slot) => Box::pin(self.inner.call(req.map(|body| Held { body, _slot: slot }))),
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
    _slot: Slot,
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
