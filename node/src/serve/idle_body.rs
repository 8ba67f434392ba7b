//! A request body that fails when no data arrives for `timeout` (`body_idle_timeout`).
//!
//! Why not tower-http's `TimeoutBody`: it creates and registers a timer on every poll of the
//! body, also when the data is already there (two timers per small PUT in the benchmark
//! profile). This one arms a timer only when the body has nothing to give: a body that arrives
//! with its headers never touches the timer wheel.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

#[derive(Debug, thiserror::Error)]
#[error("no request body data for {0:?} (body idle timeout)")]
pub struct BodyIdle(Duration);

pin_project_lite::pin_project! {
    pub struct IdleBody<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Option<Sleep>,
        timeout: Duration,
    }
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, timeout: Duration) -> IdleBody<B> {
        IdleBody {
            inner,
            sleep: None,
            timeout,
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body,
    B::Error: Into<tower::BoxError>,
{
    type Data = B::Data;
    type Error = tower::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, tower::BoxError>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            // The idle time counts again from the next wait.
            if this.sleep.is_some() {
                this.sleep.set(None);
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.timeout)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut()
            && sleep.poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Box::new(BodyIdle(*this.timeout)))));
        }
        Poll::Pending
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
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn a_stalled_body_fails_after_the_timeout_and_a_flowing_one_does_not() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|x| (x, rx)) },
            );
        let timeout = Duration::from_millis(300);
        let mut body = Box::pin(IdleBody::new(StreamBody::new(stream), timeout));
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                // Gaps shorter than the timeout, longer than it in total.
                tokio::time::sleep(Duration::from_millis(150)).await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await;
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        for _ in 0..3 {
            let frame = body.frame().await.expect("a frame").expect("no error");
            assert_eq!(frame.into_data().ok().as_deref(), Some(&b"x"[..]));
        }
        let err = body.frame().await.expect("an error").expect_err("idle");
        assert!(err.to_string().contains("idle"), "{err}");
        feeder.abort();
    }
}
