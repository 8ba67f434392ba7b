//! Accepting connections with bounds: at most `max_connections` at once (the next is closed at
//! once), request headers within `header_read_timeout`, request bodies never idle longer than
//! `body_idle_timeout`, and (with TLS) the handshake within `handshake_timeout`. Serves HTTP/1.1
//! with hyper; on shutdown stops accepting and lets in-flight requests finish (bounded by
//! `drain_timeout`).

mod head;
mod idle_body;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::metrics::Metrics;
use crate::tls::TlsServer;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// Serves `app` (an axum `Router`, or the node's `http::App`) on `listener` until
/// `shutdown` resolves, over TLS when `tls` is given.
pub async fn serve<A>(
    listener: TcpListener,
    app: A,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
    tls: Option<TlsServer>,
    metrics: Option<Arc<Metrics>>,
) where
    A: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    A::Future: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    while let Some((stream, peer, permit)) =
        accept(&listener, &slots, &mut shutdown, metrics.as_deref()).await
    {
        let (app, limits, tls, watcher) =
            (app.clone(), limits.clone(), tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, app, &limits, watcher).await,
                Some(tls) => {
                    let acceptor = tls.acceptor();
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(s)) => serve_connection(s, app, &limits, watcher).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the drain timeout; closing them");
    }
}

/// The next connection within the limit of `slots` (one beyond it is closed at once and
/// counted), until `shutdown` resolves (None).
pub async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    metrics: Option<&Metrics>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => return None,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if let Some(m) = metrics {
                m.connections_refused.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(%peer, "connection limit reached: closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        return Some((stream, peer, permit));
    }
}

async fn serve_connection<S, A>(
    stream: S,
    app: A,
    limits: &Limits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    A::Future: Send + 'static,
{
    let idle = limits.body_idle_timeout;
    let clock = head::HeadClock::new();
    let conn_clock = clock.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        clock.busy();
        let req = req.map(|b| axum::body::Body::new(idle_body::IdleBody::new(b, idle)));
        let answer = app.clone().oneshot(req);
        let clock = clock.clone();
        async move {
            let resp = answer.await?;
            Ok::<_, Infallible>(head::DoneBody::wrap(resp, clock))
        }
    });
    // No hyper header timeout (and so no timer): `head` keeps the deadline per connection.
    let mut http = hyper::server::conn::http1::Builder::new();
    http.header_read_timeout(None);
    let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
    match head::HeadDeadline::new(conn, conn_clock, limits.header_read_timeout).await {
        Some(Ok(())) => {}
        Some(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
        None => tracing::debug!("no request headers within the header read timeout: closed"),
    }
}
