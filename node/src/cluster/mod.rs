//! Turning single nodes into a cluster: request routing (local, or forwarded to an owner in one
//! hop with failover), replication of writes to every live write owner per `writeConsistency`,
//! learning newer ring epochs from peers, and migration/recovery pulls ([`migration`]).

pub mod completeness;
pub mod fence;
pub mod migration;
pub mod peer;
pub mod pipeline;
pub mod replication;

use crate::config::WriteConsistency;
use crate::engine::Record;
use crate::http::{ApiError, SharedState};
use crate::ring_state::{RingUpdate, RingUpdateError, RingView};
use axum::http::StatusCode;
use bytes::Bytes;
use std::sync::Arc;

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

fn path_for(key: &[u8]) -> String {
    let mut s = String::with_capacity(9 + key.len() * 3);
    s.push_str("/v1/keys/");
    push_key_escaped(&mut s, key);
    s
}

/// Percent-encodes `key` as one path segment (RFC 3986 unreserved bytes stay as they are).
fn push_key_escaped(s: &mut String, key: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            s.push(b as char);
        } else {
            s.push('%');
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// Installs a ring document from any source (push, mounted file, a peer): the one place that
/// does, so every install wakes the migration task and lets replication forget repaired owners.
pub fn install_ring(
    s: &SharedState,
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
            s.metrics
                .ring_conflicts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(via, error = %e, "ring refused");
        }
        Err(e) => tracing::debug!(via, error = %e, "ring not taken"),
    }
    r
}

/// Learns a newer epoch seen in a header: fetches the ring from `addr`, but only when `addr` is
/// a member of this node's current ring (the header itself proves nothing: anyone can send it),
/// with the internal token, size-bounded, and installs it only if it validates.
pub fn observe_epoch(s: &SharedState, epoch: Option<u64>, addr: &str) {
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
    if s.learning_epoch
        .fetch_max(e, std::sync::atomic::Ordering::AcqRel)
        >= e
    {
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
                s.learning_epoch
                    .store(s.ring.epoch(), std::sync::atomic::Ordering::Release);
            }
        }
    });
}

/// Counts a failed hop and returns its message, kept in case every owner fails.
fn forward_failed(s: &SharedState, e: &peer::PeerError, op: &'static str) -> String {
    s.metrics
        .forward_errors
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(error = %e, op, "forwarded request failed; trying next owner");
    e.to_string()
}

/// Refuses data operations while the node still runs on its placeholder ring.
fn require_ring(s: &SharedState, view: &RingView) -> Result<(), ApiError> {
    if s.expects_ring && view.epoch() == 0 {
        return Err(ApiError::unavailable(
            "no ring loaded yet (waiting for the ring file or a ring push)".to_string(),
        ));
    }
    Ok(())
}

/// Reads `key`: locally when this node serves reads for its partition, otherwise from a live
/// owner (one hop, failover to the next on connection errors and 5xx).
///
/// `forwarded`: the request came from a peer and must not be forwarded again. Reads need nothing
/// else of the origin: the owner is asked with the internal token, not the client's.
pub async fn read(s: &SharedState, key: &[u8], forwarded: bool) -> Result<Option<Bytes>, ApiError> {
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
        return Err(ApiError::unavailable(format!(
            "forwarded read for partition {p}, which this node does not hold completely at epoch {}",
            view.epoch()
        )));
    }
    let owners = view.doc.read_owners(p);
    let from = pipeline::Sender {
        epoch: view.epoch(),
        origin: view.origin.clone(),
    };
    let mut last_err = format!("no live owner for partition {p}");
    for i in owners {
        let addr = view.addr(i);
        s.metrics
            .forwards
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match s.peers.read_forwarded(addr, key, &from).await {
            Ok((value, epoch)) => {
                observe_epoch(s, epoch, addr);
                return Ok(value);
            }
            Err(peer::PeerError::Status { status, body, .. }) if status < 500 => {
                return Err(relay_error(status, body.as_bytes()));
            }
            Err(e) => last_err = forward_failed(s, &e, "read"),
        }
    }
    Err(ApiError::unavailable(last_err))
}

/// A write: `Some(value)` sets, `None` deletes.
pub struct Write {
    pub value: Option<Bytes>,
    pub ttl_ms: Option<u64>,
}

/// Writes `key`: coordinated here when this node is a write owner (stored locally, then
/// replicated to every other live write owner, acknowledged per `writeConsistency`), otherwise
/// forwarded to the first write owner that answers.
pub async fn write(s: &SharedState, key: &[u8], w: Write, origin: &Origin) -> Result<(), ApiError> {
    let p = s.engine.partition_of(key);
    let now = s.clock.now_ms();
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
        return Err(ApiError::unavailable(format!(
            "no live owner for partition {p}"
        )));
    }
    // Data exists only where a serving owner holds it: a write taken by recovering or joining
    // owners alone could be lost with them unnoticed (and a partition no serving owner ever held
    // is known to be empty, which recovery relies on).
    if view.doc.read_owners(p).is_empty() {
        return Err(ApiError::unavailable(format!(
            "partition {p} has no serving owner at epoch {} (its owners are down or still recovering)",
            view.epoch()
        )));
    }
    if view.takes_write(p) {
        let rec = match w.value {
            Some(v) => s.engine.set(key, v, w.ttl_ms, now)?,
            None => s.engine.delete(key, now)?,
        };
        return replicate(s, &view, &owners, rec, guard).await;
    }
    if origin.forwarded {
        return Err(ApiError::unavailable(format!(
            "forwarded write for partition {p}, which this node does not own at epoch {}",
            view.epoch()
        )));
    }
    let mut path = path_for(key);
    if let Some(t) = w.ttl_ms {
        path.push_str(&format!("?ttl={t}ms"));
    }
    let method = if w.value.is_some() {
        reqwest::Method::PUT
    } else {
        reqwest::Method::DELETE
    };
    let mut last_err = String::new();
    for i in owners {
        let addr = view.addr(i);
        s.metrics
            .forwards
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match s
            .peers
            .forward(
                addr,
                peer::ForwardRequest {
                    method: method.clone(),
                    path_and_query: &path,
                    body: w.value.clone(),
                },
                view.epoch(),
                view.self_addr(),
            )
            .await
        {
            Ok(f) => {
                observe_epoch(s, f.epoch, addr);
                return match f.status {
                    200..=299 => Ok(()),
                    st => Err(relay_error(st, &f.body)),
                };
            }
            Err(e) => last_err = forward_failed(s, &e, "write"),
        }
    }
    Err(ApiError::unavailable(last_err))
}

/// Sends `rec` (already stored here) to the other write owners and waits for enough acks.
async fn replicate(
    s: &SharedState,
    view: &Arc<RingView>,
    owners: &[u32],
    rec: Record,
    guard: fence::WriteGuard,
) -> Result<(), ApiError> {
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
            .enqueue(rec, others, view.self_addr().to_string(), guard)
            .await;
        return Ok(());
    }
    // Each replica write runs as its own task: once enough have acknowledged, the client is
    // answered and the rest still complete (dropping them would leave those replicas stale).
    let mut calls: futures_util::stream::FuturesUnordered<_> = others
        .into_iter()
        .map(|addr| {
            let (s, view, rec) = (s.clone(), view.clone(), rec.clone());
            // Each replica write holds the fence until it is done, also after the client's answer.
            let guard = guard.clone();
            tokio::spawn(async move {
                let _guard = guard;
                let r = s
                    .peers
                    .apply(
                        &addr,
                        std::slice::from_ref(&rec),
                        view.epoch(),
                        view.self_addr(),
                    )
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
                s.metrics
                    .replication_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                errors.push(e.to_string());
            }
            Err(e) => errors.push(format!("replica task failed: {e}")),
        }
        if acks >= need {
            return Ok(());
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "replication_failed",
        format!(
            "{acks} of {need} replica acknowledgements: {}",
            errors.join("; ")
        ),
    ))
}

fn relay_error(status: u16, body: &[u8]) -> ApiError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let msg = v["error"]
        .as_str()
        .unwrap_or("error from owner")
        .to_string();
    let code: &'static str = match v["code"].as_str() {
        Some("bad_key") => "bad_key",
        Some("bad_ttl") => "bad_ttl",
        Some("value_too_large") => "value_too_large",
        Some("insufficient_storage") => "insufficient_storage",
        Some("unauthorized") => "unauthorized",
        _ => "owner_error",
    };
    ApiError::new(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        code,
        msg,
    )
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

    #[test]
    fn key_paths_are_percent_encoded() {
        assert_eq!(path_for(b"a b/c"), "/v1/keys/a%20b%2Fc");
        assert_eq!(path_for(b"user:1"), "/v1/keys/user%3A1");
    }
}
