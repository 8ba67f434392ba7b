//! Rings arrive by push, by the mounted file, or from a peer whose newer epoch a request
//! revealed; all of them are installed here.

use super::node::SharedNode;
use crate::ring_state::{RingUpdate, RingUpdateError};
use std::sync::atomic::Ordering;

/// Installs a ring document from any source (push, mounted file, a peer): the one place that
/// does, so every install wakes the migration task and lets replication forget repaired owners.
pub fn install_ring(
    s: &SharedNode,
    bytes: &[u8],
    via: &str,
) -> Result<RingUpdate, RingUpdateError> {
    let r = s.ring.update_json(bytes);
    match &r {
        Ok(RingUpdate::Accepted) => {
            let view = s.ring.get();
            tracing::info!(epoch = view.epoch(), via, "ring accepted");
            s.replication.on_ring(&view);
            s.ring_changed.notify_waiters();
        }
        Ok(RingUpdate::SameEpoch) => {}
        Err(e @ RingUpdateError::SameEpochConflict { .. }) => {
            s.metrics.ring_conflicts.fetch_add(1, Ordering::Relaxed);
            tracing::error!(via, error = %e, "ring refused");
        }
        Err(e) => tracing::debug!(via, error = %e, "ring not taken"),
    }
    r
}

/// Learns a newer epoch seen in a header: fetches the ring from `addr`, but only when `addr` is
/// a member of this node's current ring (the header itself proves nothing: anyone can send it),
/// with the internal token, size-bounded, and installs it only if it validates.
pub fn observe_epoch(s: &SharedNode, epoch: Option<u64>, addr: &str) {
    let Some(e) = epoch else { return };
    if e <= s.ring.epoch() || addr.is_empty() {
        return;
    }
    let view = s.ring.get();
    let is_member = view
        .doc
        .members
        .iter()
        .enumerate()
        .any(|(i, m)| m.addr == addr && Some(i as u32) != view.self_index);
    if !is_member {
        return;
    }
    if s.learning_epoch.fetch_max(e, Ordering::AcqRel) >= e {
        return; // a fetch for this epoch (or a newer one) is already under way
    }
    let s = s.clone();
    let addr = addr.to_string();
    tokio::spawn(async move {
        match s.peers.fetch_ring(&addr).await {
            Ok(body) => {
                let _ = install_ring(&s, &body, "peer");
            }
            Err(e) => {
                tracing::debug!(from = %addr, error = %e, "cannot fetch peer ring");
                // Let the next request carrying this epoch try again.
                s.learning_epoch.store(s.ring.epoch(), Ordering::Release);
            }
        }
    });
}
