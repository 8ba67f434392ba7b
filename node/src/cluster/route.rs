//! Key reads and writes across the cluster: answered here when this node serves the key's
//! partition, otherwise forwarded to an owner in one hop (failing over to the next); writes
//! coordinated here are replicated to every other live write owner and acknowledged per
//! `writeConsistency`.

use super::epochs::observe_epoch;
use super::error::{ClusterError, Op};
use super::fence;
use super::node::SharedNode;
use super::ops::{KeyOp, Outcome};
use super::peers::{PeerError, Sender, WriteOp};
use crate::config::WriteConsistency;
use crate::engine::{Kind, Record};
use crate::ring_view::RingView;
use bytes::Bytes;
use ringcache_common::protocol::ErrorCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Acknowledgements a write needs out of `owners` live write owners.
pub fn required_acks(c: WriteConsistency, owners: usize) -> usize {
    match c {
        WriteConsistency::All => owners,
        WriteConsistency::Quorum => owners / 2 + 1,
        WriteConsistency::One => 1.min(owners),
    }
}

/// Context of a key request as it arrived.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The request was forwarded by a peer: never forward it again.
    pub forwarded: bool,
}

/// Counts a failed hop and returns its message, kept in case every owner fails.
fn forward_failed(s: &SharedNode, e: &PeerError, op: Op) -> String {
    s.metrics.forward_errors.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(error = %e, %op, "forwarded request failed; trying next owner");
    e.to_string()
}

/// Refuses data operations while the node still runs on its placeholder ring.
fn require_ring(s: &SharedNode, view: &RingView) -> Result<(), ClusterError> {
    if s.expects_ring && view.epoch() == 0 {
        return Err(ClusterError::NoRing);
    }
    Ok(())
}

/// Reads `key`: locally when this node serves reads for its partition, otherwise from a live
/// owner (one hop, failover to the next on connection errors and 5xx).
///
/// `forwarded`: the request came from a peer and must not be forwarded again. Reads need nothing
/// else of the origin: the owner is asked with the internal token, not the client's.
pub async fn read(
    s: &SharedNode,
    key: &[u8],
    forwarded: bool,
) -> Result<Option<Bytes>, ClusterError> {
    let p = s.engine.partition_of(key);
    let now = s.clock.now_ms();
    let view = s.ring.get();
    require_ring(s, &view)?;
    let complete = s.ring.completeness().is_complete(p);
    if complete && view.serves_read(p) {
        return Ok(s.engine.get(key, now));
    }
    if forwarded {
        // The sender's ring says this node serves the partition and ours does not (yet): answer
        // when the partition is complete here, never from a partial store.
        if complete {
            return Ok(s.engine.get(key, now));
        }
        return Err(ClusterError::NotOwner {
            op: Op::Read,
            partition: p,
            epoch: view.epoch(),
        });
    }
    let from = Sender::of(&view);
    let mut last_err = ClusterError::NoLiveOwner { partition: p };
    for i in view.doc.read_owners(p) {
        let addr = view.addr(i);
        s.metrics.forwards.fetch_add(1, Ordering::Relaxed);
        match s.peers.read(addr, key, &from).await {
            Ok((value, epoch)) => {
                observe_epoch(s, epoch, addr);
                return Ok(value);
            }
            Err(PeerError::Status { status, body, .. }) if status < 500 => {
                return Err(ClusterError::from_owner(status, body.as_bytes()));
            }
            Err(e) => last_err = ClusterError::Unreachable(forward_failed(s, &e, Op::Read)),
        }
    }
    Err(last_err)
}

/// A write: `Some(value)` sets, `None` deletes.
pub struct Write {
    pub value: Option<Bytes>,
    pub ttl_ms: Option<u64>,
}

/// Writes `key`: coordinated here when this node is a write owner (stored locally, then
/// replicated to every other live write owner, acknowledged per `writeConsistency`), otherwise
/// forwarded to the first write owner that answers.
pub async fn write(
    s: &SharedNode,
    key: &[u8],
    w: Write,
    origin: &Origin,
) -> Result<(), ClusterError> {
    let p = s.engine.partition_of(key);
    let now = s.clock.now_ms();
    let (view, guard, owners) = enter_write(s, p)?;
    if view.takes_write(p) {
        let rec = match w.value {
            Some(v) => s.engine.set(key, v, w.ttl_ms, now)?,
            None => s.engine.delete(key, now)?,
        };
        return replicate(s, &view, &owners, rec, guard).await;
    }
    if origin.forwarded {
        return Err(ClusterError::NotOwner {
            op: Op::Write,
            partition: p,
            epoch: view.epoch(),
        });
    }
    let op = match w.value {
        Some(value) => WriteOp::Set {
            value,
            ttl_ms: w.ttl_ms,
        },
        None => WriteOp::Delete,
    };
    let from = Sender::of(&view);
    let mut last_err = String::new();
    for i in owners {
        let addr = view.addr(i);
        s.metrics.forwards.fetch_add(1, Ordering::Relaxed);
        match s.peers.write(addr, key, &op, &from).await {
            Ok(f) => {
                observe_epoch(s, f.epoch, addr);
                return match f.status {
                    200..=299 => Ok(()),
                    st => Err(ClusterError::from_owner(st, &f.body)),
                };
            }
            Err(e) => last_err = forward_failed(s, &e, Op::Write),
        }
    }
    Err(ClusterError::Unreachable(last_err))
}

/// The ring a write of partition `p` is routed with, counted in the migration fence under its
/// epoch, and the partition's live write owners.
fn enter_write(
    s: &SharedNode,
    p: u32,
) -> Result<(Arc<RingView>, fence::WriteGuard, Vec<u32>), ClusterError> {
    // Count this write under the epoch it is routed with before routing it, and make sure that
    // epoch is still the ring's: a migration fence reading "epoch E, nothing older in flight"
    // then cannot miss it (see `fence`).
    let (view, guard) = loop {
        let view = s.ring.get();
        let guard = s.writes.enter(view.epoch());
        if s.ring.epoch() == view.epoch() {
            break (view, guard);
        }
    };
    require_ring(s, &view)?;
    let owners = view.doc.write_owners(p);
    if owners.is_empty() {
        return Err(ClusterError::NoLiveOwner { partition: p });
    }
    // Data exists only where a serving owner holds it: a write taken by recovering or joining
    // owners alone could be lost with them unnoticed (and a partition no serving owner ever held
    // is known to be empty, which recovery relies on).
    if view.doc.read_owners(p).is_empty() {
        return Err(ClusterError::NoServingOwner {
            partition: p,
            epoch: view.epoch(),
        });
    }
    Ok((view, guard, owners))
}

/// Runs a read-modify-write `op` on `key` where the key's current value is known: on its first
/// serving owner that holds the partition completely (the next one when it cannot be reached),
/// so that two increments of one key meet on one node. What it writes is replicated to every
/// other live write owner like a plain write.
pub async fn op(
    s: &SharedNode,
    key: &[u8],
    op: KeyOp,
    origin: &Origin,
) -> Result<Outcome, ClusterError> {
    if let KeyOp::WaitFilled { within_ms } = op {
        return wait_filled(s, key, within_ms, origin).await;
    }
    let p = s.engine.partition_of(key);
    let now = s.clock.now_ms();
    let (view, guard, owners) = enter_write(s, p)?;
    let here = view.takes_write(p) && view.serves_read(p) && s.ring.completeness().is_complete(p);
    let run_here = || async {
        let (outcome, rec) = super::ops::run_local(&s.engine, key, &op, now, s.op_limits())??;
        if let Some(rec) = rec {
            // Clients blocked on this key wait here, where every push to it is decided.
            s.waiters.wake(key);
            replicate(s, &view, &owners, rec, guard).await?;
        }
        Ok(outcome)
    };
    if origin.forwarded {
        if here {
            return run_here().await;
        }
        return Err(ClusterError::NotOwner {
            op: Op::Write,
            partition: p,
            epoch: view.epoch(),
        });
    }
    let from = Sender::of(&view);
    let mut last_err = String::new();
    for i in view.doc.read_owners(p) {
        if Some(i) == view.self_index {
            if here {
                return run_here().await;
            }
            continue;
        }
        let addr = view.addr(i);
        s.metrics.forwards.fetch_add(1, Ordering::Relaxed);
        match s.peers.op(addr, key, &op, &from).await {
            // The owner ran the op and then failed to replicate it: running it again on the
            // next owner would apply it twice (an increment counted twice).
            Err(PeerError::Status { status, body, .. })
                if ClusterError::from_owner(status, body.as_bytes()).code()
                    == Some(ErrorCode::ReplicationFailed) =>
            {
                return Err(ClusterError::from_owner(status, body.as_bytes()));
            }
            Ok(f) => {
                observe_epoch(s, f.epoch, addr);
                return match f.status {
                    200..=299 => serde_json::from_slice(&f.body).map_err(|e| {
                        ClusterError::Unreachable(format!("{addr}: unreadable answer: {e}"))
                    }),
                    st => Err(ClusterError::from_owner(st, &f.body)),
                };
            }
            Err(e) => last_err = forward_failed(s, &e, Op::Write),
        }
    }
    if last_err.is_empty() {
        return Err(ClusterError::NotOwner {
            op: Op::Write,
            partition: p,
            epoch: view.epoch(),
        });
    }
    Err(ClusterError::Unreachable(last_err))
}

/// `KeyOp::WaitFilled` on the key's first serving owner: it changes nothing, so it is not
/// counted as a write in flight (a wait must not hold up a migration's fence).
async fn wait_filled(
    s: &SharedNode,
    key: &[u8],
    within_ms: u64,
    origin: &Origin,
) -> Result<Outcome, ClusterError> {
    let p = s.engine.partition_of(key);
    let view = s.ring.get();
    require_ring(s, &view)?;
    let within = Duration::from_millis(within_ms).min(super::waiters::SLICE);
    let here = view.takes_write(p) && view.serves_read(p) && s.ring.completeness().is_complete(p);
    if here {
        let filled = || {
            matches!(
                s.engine.kind_of(key, s.clock.now_ms()),
                Some(Kind::List | Kind::ZSet)
            )
        };
        let found = s.waiters.wait(key, within, filled).await;
        return Ok(Outcome::Int(i64::from(found)));
    }
    if origin.forwarded {
        return Err(ClusterError::NotOwner {
            op: Op::Read,
            partition: p,
            epoch: view.epoch(),
        });
    }
    let from = Sender::of(&view);
    let op = KeyOp::WaitFilled { within_ms };
    let mut last_err = String::new();
    for i in view.doc.read_owners(p) {
        if Some(i) == view.self_index {
            continue;
        }
        let addr = view.addr(i);
        match s.peers.op(addr, key, &op, &from).await {
            Ok(f) if (200..300).contains(&f.status) => {
                return serde_json::from_slice(&f.body).map_err(|e| {
                    ClusterError::Unreachable(format!("{addr}: unreadable answer: {e}"))
                });
            }
            Ok(f) => return Err(ClusterError::from_owner(f.status, &f.body)),
            Err(e) => last_err = forward_failed(s, &e, Op::Read),
        }
    }
    Err(ClusterError::Unreachable(if last_err.is_empty() {
        format!("no serving owner of partition {p} to wait on")
    } else {
        last_err
    }))
}

/// Sends `rec` (already stored here) to the other write owners and waits for enough acks.
async fn replicate(
    s: &SharedNode,
    view: &Arc<RingView>,
    owners: &[u32],
    rec: Record,
    guard: fence::WriteGuard,
) -> Result<(), ClusterError> {
    let others: Vec<String> = owners
        .iter()
        .filter(|&&i| Some(i) != view.self_index)
        .map(|&i| view.addr(i).to_string())
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    let need = required_acks(s.write_consistency, owners.len()).saturating_sub(1);
    if need == 0 {
        s.replication
            .enqueue(rec, others, Sender::of(view), guard)
            .await;
        return Ok(());
    }
    // Each replica write runs as its own task: once enough have acknowledged, the client is
    // answered and the rest still complete (dropping them would leave those replicas stale).
    let from = Sender::of(view);
    let mut calls: futures_util::stream::FuturesUnordered<_> = others
        .into_iter()
        .map(|addr| {
            let (s, from, rec) = (s.clone(), from.clone(), rec.clone());
            // Each replica write holds the fence until it is done, also after the client's answer.
            let guard = guard.clone();
            tokio::spawn(async move {
                let _guard = guard;
                let r = s
                    .peers
                    .apply(&addr, std::slice::from_ref(&rec), &from)
                    .await;
                match &r {
                    Ok(epoch) => observe_epoch(&s, *epoch, &addr),
                    // With `quorum` the write may be acknowledged without this owner; it must
                    // then copy its partitions again before it counts as complete.
                    Err(_) if s.write_consistency != WriteConsistency::All => {
                        s.replication.mark_stale(&addr)
                    }
                    Err(_) => {}
                }
                r
            })
        })
        .collect();
    use futures_util::StreamExt;
    let (mut acks, mut errors) = (0usize, Vec::new());
    while let Some(joined) = calls.next().await {
        match joined {
            Ok(Ok(_)) => acks += 1,
            Ok(Err(e)) => {
                s.metrics.replication_errors.fetch_add(1, Ordering::Relaxed);
                errors.push(e.to_string());
            }
            Err(e) => errors.push(format!("replica task failed: {e}")),
        }
        if acks >= need {
            return Ok(());
        }
    }
    Err(ClusterError::Replication {
        acks,
        need,
        errors: errors.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_per_consistency() {
        assert_eq!(required_acks(WriteConsistency::All, 3), 3);
        assert_eq!(required_acks(WriteConsistency::Quorum, 3), 2);
        assert_eq!(required_acks(WriteConsistency::Quorum, 2), 2);
        assert_eq!(required_acks(WriteConsistency::Quorum, 4), 3);
        assert_eq!(required_acks(WriteConsistency::One, 3), 1);
    }
}
