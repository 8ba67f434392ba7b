//! The migration write fence: which ring epochs the writes this node is still coordinating were
//! routed with.
//!
//! A write routed under an older ring goes only to the old owners. A node that must pull a
//! partition it gains can start once no writer is still coordinating such a write: every later
//! write reaches it directly (writes during a migration go to current ∪ target owners), and every
//! earlier one has landed at the owners it pulls from. Each node therefore counts its in-flight
//! writes by epoch (including replica writes still queued or still running after the client was
//! answered) and reports the oldest on `/healthz`; the puller waits until every writer reports an
//! epoch at least its own and nothing older in flight.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Writes this node coordinates, counted per ring epoch they were routed with.
#[derive(Debug, Default)]
pub struct WritesInFlight {
    by_epoch: Mutex<BTreeMap<u64, usize>>,
}

/// Held for as long as a write (or one of its replica writes) is under way.
#[derive(Debug)]
pub struct WriteGuard {
    writes: Arc<WritesInFlight>,
    epoch: u64,
}

impl WritesInFlight {
    pub fn enter(self: &Arc<Self>, epoch: u64) -> WriteGuard {
        *self.by_epoch.lock().entry(epoch).or_default() += 1;
        WriteGuard {
            writes: self.clone(),
            epoch,
        }
    }

    /// The oldest epoch any write still under way was routed with.
    pub fn oldest(&self) -> Option<u64> {
        self.by_epoch.lock().keys().next().copied()
    }
}

impl WriteGuard {
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// Another hold on the same write (a replica write that outlives the client's answer).
impl Clone for WriteGuard {
    fn clone(&self) -> WriteGuard {
        self.writes.enter(self.epoch)
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        let mut m = self.writes.by_epoch.lock();
        if let Some(n) = m.get_mut(&self.epoch) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.epoch);
            }
        }
    }
}

/// Whether a writer that reported (`epoch`, `oldest` in-flight epoch) can no longer deliver a
/// write routed under a ring older than `pull_epoch`.
pub fn settled(pull_epoch: u64, epoch: u64, oldest: Option<u64>) -> bool {
    epoch >= pull_epoch && oldest.is_none_or(|o| o >= pull_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_follows_the_guards_still_held() {
        let w = Arc::new(WritesInFlight::default());
        assert_eq!(w.oldest(), None);
        let a = w.enter(3);
        let b = w.enter(5);
        let a2 = a.clone();
        assert_eq!(w.oldest(), Some(3));
        drop(a);
        assert_eq!(w.oldest(), Some(3), "the clone still holds epoch 3");
        drop(a2);
        assert_eq!(w.oldest(), Some(5));
        drop(b);
        assert_eq!(w.oldest(), None);
    }

    #[test]
    fn a_writer_is_settled_only_on_the_new_epoch_with_nothing_older_in_flight() {
        assert!(settled(4, 4, None));
        assert!(settled(4, 5, Some(4)));
        assert!(!settled(4, 3, None), "still on the old ring");
        assert!(
            !settled(4, 4, Some(3)),
            "an old-ring write is still under way"
        );
    }
}
