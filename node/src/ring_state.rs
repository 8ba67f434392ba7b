//! The ring this node serves with. Epochs never go backwards: an older document is refused,
//! the same epoch again is accepted as a no-op.

use crate::completeness::Completeness;
pub use crate::ring_view::RingView;
use parking_lot::RwLock;
use ringcache_ring::{RingDoc, RingError};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingUpdateError {
    #[error("{0}")]
    Invalid(#[from] RingError),
    #[error("ring epoch {got} is older than the current epoch {have}")]
    OlderEpoch { have: u64, got: u64 },
    #[error(
        "ring has {got} partitions but this node was started with {have}; partitions are fixed for a cluster's life"
    )]
    PartitionCount { have: u32, got: u32 },
    #[error(
        "ring epoch {epoch} differs from the ring this node already serves with at that epoch: two writers of one epoch"
    )]
    SameEpochConflict { epoch: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingUpdate {
    /// The document became the current ring.
    Accepted,
    /// The same document as the current ring: nothing changed.
    SameEpoch,
}

/// The current ring, and with it what this process holds completely: both change together
/// under one lock, so a report never pairs one ring with the other's completeness.
pub struct RingState {
    node_id: String,
    current: RwLock<Arc<RingView>>,
    completeness: Arc<Completeness>,
}

impl RingState {
    pub fn new(doc: RingDoc, node_id: &str, completeness: Arc<Completeness>) -> RingState {
        let view = RingView::new(doc, node_id);
        completeness.on_ring(&view);
        RingState {
            node_id: node_id.to_string(),
            current: RwLock::new(Arc::new(view)),
            completeness,
        }
    }

    pub fn completeness(&self) -> &Arc<Completeness> {
        &self.completeness
    }

    /// Whether this process may answer a read of `p` from its own store: the ring lets it serve
    /// the partition and it holds the partition completely.
    pub fn serves_read_locally(&self, p: u32) -> bool {
        self.serves_read(p) && self.completeness.is_complete(p)
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn get(&self) -> Arc<RingView> {
        self.current.read().clone()
    }

    pub fn epoch(&self) -> u64 {
        self.current.read().doc.epoch
    }

    /// Whether this node serves reads of `p` (no `Arc` clone: the hot path).
    pub fn serves_read(&self, p: u32) -> bool {
        self.current.read().serves_read(p)
    }

    /// Validates and installs `doc` unless it is older than the current ring. A document of the
    /// current epoch must be the current document: a different one is refused.
    pub fn update(&self, doc: RingDoc) -> Result<RingUpdate, RingUpdateError> {
        doc.validate()?;
        let mut cur = self.current.write();
        if doc.partitions != cur.doc.partitions {
            return Err(RingUpdateError::PartitionCount {
                have: cur.doc.partitions,
                got: doc.partitions,
            });
        }
        if doc.epoch < cur.doc.epoch {
            return Err(RingUpdateError::OlderEpoch {
                have: cur.doc.epoch,
                got: doc.epoch,
            });
        }
        if doc.epoch == cur.doc.epoch {
            if doc == cur.doc {
                return Ok(RingUpdate::SameEpoch);
            }
            return Err(RingUpdateError::SameEpochConflict { epoch: doc.epoch });
        }
        let view = RingView::new(doc, &self.node_id);
        self.completeness.on_ring(&view);
        *cur = Arc::new(view);
        Ok(RingUpdate::Accepted)
    }

    /// Parses JSON then [`RingState::update`]s.
    pub fn update_json(&self, bytes: &[u8]) -> Result<RingUpdate, RingUpdateError> {
        self.update(RingDoc::from_json(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_ring::{Member, MemberState};

    fn state(d: RingDoc, id: &str) -> RingState {
        let parts = d.partitions;
        RingState::new(d, id, Arc::new(Completeness::new(parts, "inc")))
    }

    fn doc(epoch: u64) -> RingDoc {
        let mut d = RingDoc::single_node("a", "127.0.0.1:1", 8);
        d.epoch = epoch;
        d.members.push(Member {
            id: "b".into(),
            addr: "127.0.0.2:1".into(),
            state: MemberState::Up,
            incarnation: None,
        });
        d
    }

    #[test]
    fn epochs_never_go_back() {
        let s = state(doc(1), "a");
        assert_eq!(s.update(doc(3)), Ok(RingUpdate::Accepted));
        assert_eq!(s.update(doc(3)), Ok(RingUpdate::SameEpoch));
        let mut other = doc(3);
        other.members[1].addr = "127.0.0.9:1".into();
        assert_eq!(
            s.update(other),
            Err(RingUpdateError::SameEpochConflict { epoch: 3 })
        );
        assert_eq!(
            s.update(doc(2)),
            Err(RingUpdateError::OlderEpoch { have: 3, got: 2 })
        );
        assert_eq!(s.epoch(), 3);
    }

    #[test]
    fn invalid_and_mismatched_rings_are_refused_unchanged() {
        let s = state(doc(1), "a");
        let mut bad = doc(5);
        bad.table[0] = vec![0, 0];
        assert!(matches!(s.update(bad), Err(RingUpdateError::Invalid(_))));
        let other = RingDoc::single_node("a", "127.0.0.1:1", 16);
        let mut other = other;
        other.epoch = 9;
        assert!(matches!(
            s.update(other),
            Err(RingUpdateError::PartitionCount { have: 8, got: 16 })
        ));
        assert_eq!(s.epoch(), 1);
    }

    #[test]
    fn view_knows_what_this_node_owns() {
        let s = state(doc(1), "b");
        let v = s.get();
        assert_eq!(v.self_index, Some(1));
        assert_eq!(v.partitions_owned(), 0);
        assert!(!v.serves_read(0));
    }
}
