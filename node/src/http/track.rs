//! The one layer around the whole router, written as a plain tower `Service` rather than
//! `middleware::from_fn` (which boxes a future and clones the inner service per request) and
//! wrapped around the router as a whole rather than added with `Router::layer` (which wraps
//! every route in two more boxed services, each cloned and allocated per request; the
//! benchmark profiles showed both). It counts and times each request by route template and
//! status, and exchanges ring epochs with peers: a request carrying a newer epoch makes this
//! node fetch that peer's ring, and the answer carries this node's epoch back. Having matched
//! the route, it hands the key routes straight to their handlers (`super::direct`).

use super::names::{self, EPOCH, ORIGIN};
use crate::cluster::node::SharedNode;
use crate::metrics::Route;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    state: SharedNode,
}

impl<S> Track<S> {
    pub fn new(inner: S, state: SharedNode) -> Track<S> {
        Track { inner, state }
    }
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let start = Instant::now();
        let route = Route::of(req.method(), req.uri().path());
        let peer_epoch = names::get(req.headers(), &EPOCH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if peer_epoch.is_some() {
            let origin = names::get(req.headers(), &ORIGIN)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            crate::cluster::observe_epoch(&self.state, peer_epoch, origin);
        }
        let inner = match super::direct(route) {
            Some(handler) => Inner::Direct {
                answer: handler(self.state.clone(), req),
            },
            None => Inner::Routed {
                future: self.inner.call(req),
            },
        };
        TrackFuture {
            inner,
            state: self.state.clone(),
            route,
            start,
            answer_epoch: peer_epoch.is_some(),
        }
    }
}

pin_project_lite::pin_project! {
    #[project = InnerProj]
    enum Inner<F> {
        Routed { #[pin] future: F },
        Direct { answer: super::Direct },
    }
}

pin_project_lite::pin_project! {
    pub struct TrackFuture<F> {
        #[pin]
        inner: Inner<F>,
        state: SharedNode,
        route: Route,
        start: Instant,
        answer_epoch: bool,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = match this.inner.project() {
            InnerProj::Routed { future } => future.poll(cx),
            InnerProj::Direct { answer } => answer.as_mut().poll(cx).map(Ok),
        };
        let mut resp = match polled {
            Poll::Ready(Ok(r)) => r,
            other => return other,
        };
        this.state
            .metrics
            .record(*this.route, resp.status().as_u16(), this.start.elapsed());
        if *this.answer_epoch {
            resp.headers_mut()
                .insert(EPOCH.clone(), HeaderValue::from(this.state.ring.epoch()));
        }
        Poll::Ready(Ok(resp))
    }
}
