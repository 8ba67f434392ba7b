//! The header read deadline of a connection: the next request's headers must be complete within
//! `header_read_timeout` of the connection opening or of the previous answer's end (so an idle
//! keep-alive connection is closed after it, too). A connection past its deadline is closed
//! without an answer, as hyper's own header timeout does.
//!
//! Why not hyper's: it allocates, registers and cancels a fresh timer for every request (about
//! 700 instructions and an allocation per request in the benchmark profile). Here a connection
//! keeps one timer that only fires once per timeout and then looks at when the connection last
//! went idle: per request that is a clock read and two stores.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Marks "a request is being served": no header deadline runs.
const BUSY: u64 = u64::MAX;

/// When the connection began waiting for its next request's headers.
#[derive(Debug)]
pub struct HeadClock {
    base: Instant,
    /// Nanoseconds after `base`, or [`BUSY`]. One task reads and writes it.
    idle_since: AtomicU64,
}

impl HeadClock {
    /// A clock for a connection opened now (waiting for its first headers).
    pub fn new() -> Arc<HeadClock> {
        Arc::new(HeadClock {
            base: Instant::now(),
            idle_since: AtomicU64::new(0),
        })
    }

    /// A request's headers are in.
    pub fn busy(&self) {
        self.idle_since.store(BUSY, Ordering::Relaxed);
    }

    /// The answer is out: waiting for the next headers from now.
    pub fn idle(&self) {
        let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(BUSY - 1);
        self.idle_since.store(ns.min(BUSY - 1), Ordering::Relaxed);
    }

    /// When the headers now awaited are due (None while a request is served).
    fn due(&self, timeout: Duration) -> Option<Instant> {
        match self.idle_since.load(Ordering::Relaxed) {
            BUSY => None,
            ns => Some(self.base + Duration::from_nanos(ns) + timeout),
        }
    }
}

pin_project_lite::pin_project! {
    /// Drives `conn` until it ends (`Some` of its output) or misses its header deadline
    /// (`None`: `conn` is dropped, which closes the connection).
    pub struct HeadDeadline<C> {
        #[pin]
        conn: C,
        #[pin]
        sleep: Sleep,
        clock: Arc<HeadClock>,
        timeout: Duration,
        armed: bool,
    }
}

impl<C> HeadDeadline<C> {
    pub fn new(conn: C, clock: Arc<HeadClock>, timeout: Duration) -> HeadDeadline<C> {
        HeadDeadline {
            conn,
            sleep: tokio::time::sleep(timeout),
            clock,
            timeout,
            armed: false,
        }
    }
}

impl<C: Future> Future for HeadDeadline<C> {
    type Output = Option<C::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.conn.poll(cx) {
            return Poll::Ready(Some(out));
        }
        // The timer, once registered, wakes this task when it is due; until then checking its
        // state is enough (polling it on every wake-up would cost more than the check).
        if *this.armed && !this.sleep.is_elapsed() {
            return Poll::Pending;
        }
        *this.armed = true;
        loop {
            let now = Instant::now();
            let next = match this.clock.due(*this.timeout) {
                Some(due) if due <= now => return Poll::Ready(None),
                Some(due) => due,
                // Serving a request: look again one timeout later.
                None => now + *this.timeout,
            };
            this.sleep.as_mut().reset(next);
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

/// An answer's body that marks the connection idle when hyper is done with it (it has been
/// written out, or the connection is gone).
pub struct DoneBody {
    inner: axum::body::Body,
    clock: Arc<HeadClock>,
}

impl DoneBody {
    pub fn wrap(resp: Response, clock: Arc<HeadClock>) -> hyper::Response<DoneBody> {
        resp.map(|inner| DoneBody { inner, clock })
    }
}

impl Drop for DoneBody {
    fn drop(&mut self) {
        self.clock.idle();
    }
}

impl Body for DoneBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn closes_only_after_a_full_timeout_of_waiting_for_headers() {
        let t = 300 * MS;
        let clock = HeadClock::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let deadline = tokio::spawn(HeadDeadline::new(
            async move {
                let _ = rx.await;
            },
            clock.clone(),
            t,
        ));
        // A request at 200 ms, answered at 300 ms: the next headers are due at 600 ms.
        tokio::time::sleep(200 * MS).await;
        clock.busy();
        tokio::time::sleep(100 * MS).await;
        clock.idle();
        tokio::time::sleep(200 * MS).await;
        assert!(!deadline.is_finished(), "closed before its deadline");
        tokio::time::sleep(400 * MS).await;
        assert!(deadline.is_finished(), "kept after its deadline");
        assert_eq!(deadline.await.ok(), Some(None));
        drop(tx);
    }

    #[tokio::test]
    async fn a_request_in_progress_has_no_header_deadline() {
        let clock = HeadClock::new();
        clock.busy();
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let deadline = tokio::spawn(HeadDeadline::new(
            async move { rx.await.unwrap_or(0) },
            clock.clone(),
            50 * MS,
        ));
        tokio::time::sleep(300 * MS).await;
        assert!(!deadline.is_finished());
        let _ = tx.send(7);
        assert_eq!(deadline.await.ok(), Some(Some(7)));
    }
}
