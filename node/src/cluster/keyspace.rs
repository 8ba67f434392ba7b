//! Commands over the whole keyspace (`DBSIZE`, `KEYS`, `SCAN`, `RANDOMKEY`, `FLUSHDB`,
//! `FLUSHALL`): every partition is answered once, by a serving owner that holds it completely,
//! so a key is counted, listed or deleted once however many replicas hold it, and a node that
//! is down or still recovering is never asked.
//!
//! Partitions are fixed for the life of a cluster (only their owners move), so a `SCAN` cursor
//! that names the next partition stays valid while the cluster scales: each key lives in
//! exactly one partition, and each partition is listed once.

use super::error::ClusterError;
pub use super::keyspace_query::{Action, Answer, Query};
use super::node::SharedNode;
use super::ops::KeyOp;
use super::peers::Sender;
use super::route::{self, Origin};
use crate::commands::{db, glob};
use crate::engine::Kind;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::BTreeMap;

/// Deletes a flush runs at once on one node.
const FLUSH_CONCURRENCY: usize = 64;

/// Owners tried for one partition before the query fails.
const ROUNDS: usize = 4;

/// Answers `q` from this node's store, for the partitions it serves completely.
pub async fn local(s: &SharedNode, q: &Query) -> Result<Answer, ClusterError> {
    let view = s.ring.get();
    let now = s.clock.now_ms();
    let kind = match q.kind.as_deref() {
        Some(name) => match Kind::named(name.as_bytes()) {
            Some(k) => Some(k),
            // No key has an unknown type.
            None => return Ok(Answer::default()),
        },
        None => None,
    };
    let mut a = Answer::default();
    for &p in &q.partitions {
        if p >= s.engine.partitions()
            || !view.serves_read(p)
            || !s.ring.completeness().is_complete(p)
        {
            a.refused.push(p);
            continue;
        }
        let keys = s.engine.live_keys(p, now, |k, kd| {
            let (in_db, k) = db::split(k);
            q.db.is_none_or(|d| d == in_db)
                && kind.is_none_or(|t| t == kd)
                && q.pattern.as_deref().is_none_or(|pat| glob::matches(pat, k))
        })?;
        match q.action {
            Action::Keys => {
                a.count += keys.len() as u64;
                a.keys.extend(keys.iter().map(|k| {
                    let (_, own) = db::split(k);
                    if own.len() == k.len() {
                        k.clone()
                    } else {
                        k.slice_ref(own)
                    }
                }));
            }
            Action::Count => a.count += keys.len() as u64,
            Action::Flush => a.count += flush(s, keys).await?,
        }
    }
    Ok(a)
}

/// Deletes `keys` (all of one partition this node coordinates writes for) through the write
/// path, so the tombstones reach every owner per `writeConsistency`.
async fn flush(s: &SharedNode, keys: Vec<Bytes>) -> Result<u64, ClusterError> {
    const ORIGIN: Origin = Origin { forwarded: true };
    let mut dels = futures_util::stream::iter(keys)
        .map(|k| {
            let s = s.clone();
            async move { route::op(&s, &k, KeyOp::Delete { get: false }, &ORIGIN).await }
        })
        .buffer_unordered(FLUSH_CONCURRENCY);
    let mut n = 0;
    while let Some(r) = dels.next().await {
        r?;
        n += 1;
    }
    Ok(n)
}

/// Runs `q` over its partitions across the cluster: each partition is asked of its first
/// serving owner, then the next when that one refuses it or cannot be reached.
pub async fn gather(s: &SharedNode, q: Query) -> Result<Answer, ClusterError> {
    let mut total = Answer::default();
    let mut pending: Vec<(u32, usize)> = q.partitions.iter().map(|&p| (p, 0)).collect();
    let mut last_err = String::new();
    for _ in 0..ROUNDS {
        if pending.is_empty() {
            return Ok(total);
        }
        let view = s.ring.get();
        if s.expects_ring && view.epoch() == 0 {
            return Err(ClusterError::NoRing);
        }
        let mut by_owner: BTreeMap<u32, Vec<(u32, usize)>> = BTreeMap::new();
        for (p, attempt) in pending.drain(..) {
            let owners = view.doc.read_owners(p);
            if owners.is_empty() {
                return Err(ClusterError::NoServingOwner {
                    partition: p,
                    epoch: view.epoch(),
                });
            }
            by_owner
                .entry(owners[attempt % owners.len()])
                .or_default()
                .push((p, attempt));
        }
        let from = Sender::of(&view);
        let calls = by_owner.into_iter().map(|(owner, parts)| {
            let sub = Query {
                partitions: parts.iter().map(|(p, _)| *p).collect(),
                ..q.clone()
            };
            let addr = view.addr(owner).to_string();
            let here = Some(owner) == view.self_index;
            let from = from.clone();
            async move {
                let r = if here {
                    local(s, &sub).await
                } else {
                    remote(s, &addr, &sub, &from).await
                };
                (parts, r)
            }
        });
        for (parts, r) in futures_util::future::join_all(calls).await {
            match r {
                Ok(mut a) => {
                    let refused = std::mem::take(&mut a.refused);
                    total.add(a);
                    pending.extend(
                        parts
                            .into_iter()
                            .filter(|(p, _)| refused.contains(p))
                            .map(|(p, at)| (p, at + 1)),
                    );
                }
                // A definitive answer (a corrupt value, a full store) is the same anywhere.
                Err(e @ (ClusterError::Owner { .. } | ClusterError::Engine(_))) => return Err(e),
                Err(e) => {
                    last_err = e.to_string();
                    pending.extend(parts.into_iter().map(|(p, at)| (p, at + 1)));
                }
            }
        }
    }
    if pending.is_empty() {
        return Ok(total);
    }
    Err(ClusterError::Unreachable(format!(
        "{} partitions had no owner that could answer: {last_err}",
        pending.len()
    )))
}

async fn remote(
    s: &SharedNode,
    addr: &str,
    q: &Query,
    from: &Sender,
) -> Result<Answer, ClusterError> {
    let f = s
        .peers
        .keyspace(addr, q, from)
        .await
        .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
    match f.status {
        200..=299 => serde_json::from_slice(&f.body)
            .map_err(|e| ClusterError::Unreachable(format!("{addr}: unreadable answer: {e}"))),
        st => Err(ClusterError::from_owner(st, &f.body)),
    }
}

/// Every partition of the cluster.
pub fn all(s: &SharedNode) -> Vec<u32> {
    (0..s.engine.partitions()).collect()
}
