//! Clients blocked on keys (`BLPOP`, `BZPOPMIN`, …) wait on each key's first serving owner,
//! where every push to the key is decided (`KeyOp::Cmd` runs there): a push wakes the waiters of
//! its key at once, whichever node the pushing client reached. The node the blocked client is
//! connected to waits in slices of at most [`SLICE`], re-routing each, so a wait outlives a
//! change of owner (a failover or a migration) with at most one slice of delay.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// The longest one wait on an owner lasts before the blocked client's node asks again (below
/// the forwarding timeout).
pub const SLICE: Duration = Duration::from_millis(1_000);

#[derive(Default)]
pub struct Waiters {
    keys: Mutex<HashMap<Bytes, Arc<Notify>>>,
    /// Waits in progress: a write checks this one atomic when nobody waits.
    waiting: AtomicUsize,
}

/// Removes a finished wait's entry when it was the last one on its key.
struct Registered<'a> {
    w: &'a Waiters,
    key: Bytes,
    notify: Arc<Notify>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.w.waiting.fetch_sub(1, Ordering::Relaxed);
        let mut keys = self.w.keys.lock();
        // Ours and the map's: nobody else waits on this key.
        if Arc::strong_count(&self.notify) == 2 {
            keys.remove(&self.key);
        }
    }
}

impl Waiters {
    /// A write changed `key`: every client waiting on it looks again.
    pub fn wake(&self, key: &[u8]) {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(n) = self.keys.lock().get(key) {
            n.notify_waiters();
        }
    }

    /// Waits until `filled()` holds (checked now and after every write to `key`) or `within`
    /// passes; answers whether it holds.
    pub async fn wait(&self, key: &[u8], within: Duration, filled: impl Fn() -> bool) -> bool {
        let notify = {
            let mut keys = self.keys.lock();
            self.waiting.fetch_add(1, Ordering::Relaxed);
            keys.entry(Bytes::copy_from_slice(key)).or_default().clone()
        };
        // The only handle of ours: when it goes, the entry goes with the last waiter.
        let registered = Registered {
            w: self,
            key: Bytes::copy_from_slice(key),
            notify,
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Listening before looking: a write between the look and the wait still wakes us.
            let notified = registered.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if filled() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return filled();
            }
        }
    }

    /// Keys with a waiter now (for tests and metrics).
    pub fn keys_waited_on(&self) -> usize {
        self.keys.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[tokio::test]
    async fn a_write_wakes_the_waiter_and_a_timeout_ends_the_wait() {
        let w = Arc::new(Waiters::default());
        let full = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (w, full) = (w.clone(), full.clone());
            tokio::spawn(async move {
                w.wait(b"q", Duration::from_secs(30), || {
                    full.load(Ordering::SeqCst)
                })
                .await
            })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while w.keys_waited_on() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "never waited");
            tokio::task::yield_now().await;
        }
        w.wake(b"other");
        full.store(true, Ordering::SeqCst);
        w.wake(b"q");
        assert!(waiter.await.unwrap(), "woken by the write");
        assert_eq!(
            w.keys_waited_on(),
            0,
            "the entry is gone with its last waiter"
        );
        let started = tokio::time::Instant::now();
        assert!(!w.wait(b"q", Duration::from_millis(50), || false).await);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
