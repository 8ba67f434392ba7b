//! The one layer on every route, written as a plain tower `Layer` rather than
//! `middleware::from_fn` (which boxes a future and clones the inner service per request; the
//! benchmark profile showed both). It counts and times each request by route template and
//! status, and exchanges ring epochs with peers: a request carrying a newer epoch makes this node
//! fetch that peer's ring, and the answer carries this node's epoch back.

use crate::cluster::node::SharedNode;
use crate::metrics::Route;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::response::Response;
use ringcache_common::protocol::{EPOCH_HEADER as EPOCH, ORIGIN_HEADER as ORIGIN};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

#[derive(Clone)]
pub struct TrackLayer {
    pub state: SharedNode,
}

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;
    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    state: SharedNode,
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
        let route = Route::classify(
            req.method(),
            req.extensions().get::<MatchedPath>().map(|p| p.as_str()),
        );
        let peer_epoch = req
            .headers()
            .get(EPOCH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if peer_epoch.is_some() {
            let origin = req
                .headers()
                .get(ORIGIN)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            crate::cluster::observe_epoch(&self.state, peer_epoch, origin);
        }
        TrackFuture {
            inner: self.inner.call(req),
            state: self.state.clone(),
            route,
            start: Instant::now(),
            answer_epoch: peer_epoch.is_some(),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
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
        let mut resp = match this.inner.poll(cx) {
            Poll::Ready(Ok(r)) => r,
            other => return other,
        };
        this.state
            .metrics
            .record(*this.route, resp.status().as_u16(), this.start.elapsed());
        if *this.answer_epoch {
            resp.headers_mut()
                .insert(EPOCH, HeaderValue::from(this.state.ring.epoch()));
        }
        Poll::Ready(Ok(resp))
    }
}
