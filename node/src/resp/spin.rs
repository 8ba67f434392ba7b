//! Busy-polling while RESP traffic flows: for a short window after the last command, one task
//! keeps the runtime from going to sleep (it yields, so the worker keeps polling for I/O
//! without blocking in `epoll_wait`).
//!
//! `--resp-busy-poll-us` sets the window (0: off). Why: at one command per round trip the client, not the node, sets the pace, and every time
//! the node has gone to sleep the client's core pays for waking it (measured: ringcache slept
//! 2.5× as often as redis-server and the same client ran 6% slower against it). Spinning costs
//! CPU only while commands keep arriving within the window; an idle node sleeps as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub struct Spinner {
    /// How long after the last command the runtime keeps polling instead of sleeping.
    window: Duration,
    start: Instant,
    /// Nanoseconds since `start` of the last command.
    last: AtomicU64,
    spinning: AtomicBool,
    wake: Notify,
}

impl Spinner {
    /// A spinner polling for `window` after each command, and its task (spawned on the
    /// current runtime).
    pub fn start(window: Duration) -> Arc<Spinner> {
        let s = Arc::new(Spinner {
            window,
            start: Instant::now(),
            last: AtomicU64::new(0),
            spinning: AtomicBool::new(false),
            wake: Notify::new(),
        });
        tokio::spawn(s.clone().run());
        s
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// A command arrived: keep polling for the next one for the window.
    pub fn kick(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
        if !self.spinning.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    async fn run(self: Arc<Self>) {
        let window = self.window.as_nanos() as u64;
        loop {
            self.wake.notified().await;
            loop {
                if self.now().saturating_sub(self.last.load(Ordering::Relaxed)) > window {
                    self.spinning.store(false, Ordering::Release);
                    // A kick between the check and the store found `spinning` set and did not
                    // wake us: look once more.
                    if self.now().saturating_sub(self.last.load(Ordering::Relaxed)) > window
                        || self.spinning.swap(true, Ordering::AcqRel)
                    {
                        break;
                    }
                }
                tokio::task::yield_now().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spins_after_a_command_and_stops_when_none_follows() {
        let s = Spinner::start(Duration::from_micros(200));
        assert!(
            !s.spinning.load(Ordering::Acquire),
            "idle before any command"
        );
        s.kick();
        assert!(s.spinning.load(Ordering::Acquire));
        // Commands keep coming: it keeps spinning.
        for _ in 0..5 {
            tokio::task::yield_now().await;
            s.kick();
            assert!(s.spinning.load(Ordering::Acquire));
        }
        // None for a while: it goes back to sleep (polled with a deadline).
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.spinning.load(Ordering::Acquire) {
            assert!(
                Instant::now() < deadline,
                "still spinning 5 s after the last command"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // And wakes up for the next one.
        s.kick();
        assert!(s.spinning.load(Ordering::Acquire));
    }
}
