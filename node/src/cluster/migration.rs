//! Migration and recovery: the same pull. A target owner streams each partition it must gain
//! from a live current owner in bounded batches and applies the records newer-wins. Progress is
//! what `GET /internal/v1/migration` reports. After a commit (no pending table), partitions this
//! node no longer owns are dropped.

use super::peer::PeerError;
use crate::http::SharedState;
use crate::ring_state::RingView;
use crate::wire::Decoder;
use futures_util::StreamExt;
use ringcache_ring::MemberState;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Entries per batch served by `GET /internal/v1/partitions/{p}`.
pub const SCAN_BATCH: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    pub epoch: u64,
    pub partitions_total: u64,
    pub partitions_done: u64,
    pub keys: u64,
    pub bytes: u64,
    pub done: bool,
    pub error: Option<String>,
    /// The writer the write fence is waiting on before pulling (`self` for this node's own
    /// old-ring writes), while it waits.
    pub waiting_for: Option<String>,
}

/// One partition to pull and where from (preference order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    pub partition: u32,
    pub sources: Vec<String>,
}

/// What this node must pull for `view` (pure). `recover` adds every partition it owns now
/// (restart, or state `recovering`); a pending table adds the partitions it gains.
pub fn plan(view: &RingView, recover: bool) -> Vec<Pull> {
    let Some(me) = view.self_index else {
        return Vec::new();
    };
    let doc = &view.doc;
    let mut out = Vec::new();
    for p in 0..doc.partitions {
        let current = doc.owners(p);
        let gains =
            doc.pending.is_some() && doc.pending_owners(p).contains(&me) && !current.contains(&me);
        let recovers = recover && current.contains(&me);
        if !(gains || recovers) {
            continue;
        }
        let sources: Vec<String> = doc
            .read_owners(p)
            .into_iter()
            .filter(|&i| i != me)
            .map(|i| view.addr(i).to_string())
            .filter(|a| !a.is_empty())
            .collect();
        out.push(Pull {
            partition: p,
            sources,
        });
    }
    out
}

/// Partitions whose data this node should drop under `view` (pure): none while a migration is
/// pending; otherwise every partition it is not a current owner of.
pub fn to_drop(view: &RingView) -> Vec<u32> {
    let Some(me) = view.self_index else {
        return Vec::new();
    };
    if view.doc.pending.is_some() {
        return Vec::new();
    }
    (0..view.doc.partitions)
        .filter(|&p| !view.doc.owners(p).contains(&me))
        .collect()
}

/// Pulls one partition from `addr`, resuming after `cursor`; returns (keys, bytes) applied.
async fn pull_from(
    s: &SharedState,
    view: &RingView,
    addr: &str,
    p: u32,
    cursor: &mut Option<Vec<u8>>,
) -> Result<(u64, u64), String> {
    let resp = s
        .peers
        .pull(addr, p, cursor.as_deref(), view.epoch(), view.self_addr())
        .await
        .map_err(|e: PeerError| e.to_string())?;
    let mut body = resp.bytes_stream();
    let mut dec = Decoder::new();
    let (mut keys, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("{addr}: {e}"))?;
        dec.feed(&chunk).map_err(|e| format!("{addr}: {e}"))?;
        while let Some(rec) = dec.next_record().map_err(|e| format!("{addr}: {e}"))? {
            let size = rec.key.len() + rec.value.as_ref().map_or(0, |v| v.len());
            s.engine
                .apply(&rec, s.clock.now_ms())
                .map_err(|e| format!("applying pulled entry: {e}"))?;
            keys += 1;
            bytes += size as u64;
            s.metrics.migration_keys.fetch_add(1, Ordering::Relaxed);
            s.metrics
                .migration_bytes
                .fetch_add(size as u64, Ordering::Relaxed);
            *cursor = Some(rec.key.to_vec());
        }
    }
    dec.finish().map_err(|e| format!("{addr}: {e}"))?;
    Ok((keys, bytes))
}

/// The write fence: waits until this node and every other member that takes writes serve with
/// at least `view`'s epoch and coordinate no write routed under an older one (see `fence`). From
/// then on every write also reaches this node, and every earlier one has landed at the owners it
/// pulls from, so a pull started afterwards misses nothing. Returns false if the ring changed
/// meanwhile.
async fn wait_for_peers(s: &SharedState, view: &RingView) -> bool {
    let peers: Vec<&str> = view
        .doc
        .members
        .iter()
        .enumerate()
        .filter(|(i, m)| {
            Some(*i as u32) != view.self_index && m.state.takes_writes() && !m.addr.is_empty()
        })
        .map(|(_, m)| m.addr.as_str())
        .collect();
    let e = view.epoch();
    loop {
        if s.ring.epoch() != e {
            return false;
        }
        if super::fence::settled(e, s.ring.epoch(), s.writes.oldest()) {
            break;
        }
        s.migration.lock().waiting_for = Some("self".into());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for addr in peers {
        loop {
            if s.ring.epoch() != e {
                return false;
            }
            match s.peers.writer_state(addr, e, view.self_addr()).await {
                Ok((epoch, oldest)) if super::fence::settled(e, epoch, oldest) => break,
                Ok((epoch, oldest)) => {
                    tracing::debug!(
                        peer = addr,
                        epoch,
                        ?oldest,
                        "peer not settled on the epoch yet"
                    )
                }
                Err(err) => {
                    tracing::debug!(peer = addr, error = %err, "waiting for peer to reach the epoch")
                }
            }
            s.migration.lock().waiting_for = Some(addr.to_string());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    s.migration.lock().waiting_for = None;
    true
}

/// Partitions pulled concurrently.
pub const PULL_CONCURRENCY: usize = 4;

/// Pulls one partition (retrying each source a few times), updating the status.
async fn pull_one(s: &SharedState, view: &Arc<RingView>, pull: Pull) -> bool {
    if s.ring.epoch() != view.epoch() {
        return false;
    }
    let mut cursor = None;
    let mut pulled = pull.sources.is_empty();
    let mut last_err = None;
    for attempt in 0..3 {
        for src in &pull.sources {
            match pull_from(s, view, src, pull.partition, &mut cursor).await {
                Ok((k, b)) => {
                    let mut st = s.migration.lock();
                    st.keys += k;
                    st.bytes += b;
                    pulled = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(partition = pull.partition, source = %src, attempt, error = %e, "pull failed");
                    last_err = Some(e);
                }
            }
        }
        if pulled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    let mut st = s.migration.lock();
    if pulled {
        st.partitions_done += 1;
        s.metrics
            .migration_partitions
            .fetch_add(1, Ordering::Relaxed);
    } else {
        st.error = last_err.map(|e| format!("partition {}: {e}", pull.partition));
    }
    pulled
}

/// Pulls every partition of `pulls`, updating the status as it goes. Returns true when all
/// partitions were pulled (or had no live source), false if the ring changed or errors remain.
async fn execute(s: &SharedState, view: &Arc<RingView>, pulls: Vec<Pull>) -> bool {
    {
        let mut st = s.migration.lock();
        *st = MigrationStatus {
            epoch: view.epoch(),
            partitions_total: pulls.len() as u64,
            done: pulls.is_empty(),
            ..Default::default()
        };
    }
    if pulls.iter().any(|p| !p.sources.is_empty()) && !wait_for_peers(s, view).await {
        return false;
    }
    // A few partitions at a time: one stream per partition keeps memory bounded, several hide the
    // per-batch round trips.
    let results: Vec<bool> = futures_util::stream::iter(pulls)
        .map(|pull| pull_one(s, view, pull))
        .buffer_unordered(PULL_CONCURRENCY)
        .collect()
        .await;
    let ok = results.iter().all(|&r| r) && s.ring.epoch() == view.epoch();
    let mut st = s.migration.lock();
    st.done = ok;
    ok
}

/// The migration task: runs at start (recovery) and after every ring change.
pub async fn run(s: SharedState, mut recover: bool) {
    let mut last_done_epoch: Option<u64> = None;
    loop {
        let view = s.ring.get();
        let me_recovering = view
            .self_index
            .and_then(|i| view.doc.members.get(i as usize))
            .is_some_and(|m| m.state == MemberState::Recovering);
        let needs = last_done_epoch != Some(view.epoch());
        if needs {
            let pulls = plan(&view, recover || me_recovering);
            let n = pulls.len();
            if n > 0 {
                tracing::info!(
                    epoch = view.epoch(),
                    partitions = n,
                    recover,
                    "pulling partitions"
                );
            }
            if execute(&s, &view, pulls).await {
                last_done_epoch = Some(view.epoch());
                recover = false;
                if !s.ready.swap(true, Ordering::AcqRel) {
                    tracing::info!(epoch = view.epoch(), "recovery done: ready");
                }
                for p in to_drop(&view) {
                    match s.engine.drop_partition(p) {
                        Ok(n) if n > 0 => tracing::info!(
                            partition = p,
                            entries = n,
                            "dropped partition no longer owned"
                        ),
                        _ => {}
                    }
                }
            }
        }
        // Wake on a ring change, or retry unfinished work after a second.
        let _ = tokio::time::timeout(Duration::from_secs(1), s.ring_changed.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_ring::{Member, Pending, RingDoc};

    fn doc() -> RingDoc {
        let m = |id: &str, n: u8, state| Member {
            id: id.into(),
            addr: format!("127.0.0.{n}:7070"),
            state,
        };
        RingDoc {
            version: 1,
            epoch: 3,
            partitions: 4,
            replication_factor: 2,
            hash: "xxh3_64".into(),
            members: vec![
                m("a", 2, MemberState::Up),
                m("b", 3, MemberState::Up),
                m("c", 4, MemberState::Joining),
            ],
            table: vec![vec![0, 1], vec![1, 0], vec![0, 1], vec![1, 0]],
            pending: Some(Pending {
                table: vec![vec![0, 2], vec![1, 0], vec![2, 1], vec![1, 0]],
            }),
        }
    }

    #[test]
    fn a_gainer_pulls_exactly_its_new_partitions_from_current_owners() {
        let view = RingView::new(doc(), "c");
        let pulls = plan(&view, false);
        assert_eq!(
            pulls,
            vec![
                Pull {
                    partition: 0,
                    sources: vec!["127.0.0.2:7070".into(), "127.0.0.3:7070".into()]
                },
                Pull {
                    partition: 2,
                    sources: vec!["127.0.0.2:7070".into(), "127.0.0.3:7070".into()]
                },
            ]
        );
        // Current owners gain nothing; without recovery they pull nothing.
        assert!(plan(&RingView::new(doc(), "a"), false).is_empty());
    }

    #[test]
    fn recovery_pulls_every_owned_partition_from_live_co_owners() {
        let mut d = doc();
        d.pending = None;
        d.members[2].state = MemberState::Up;
        d.members[1].state = MemberState::Recovering;
        let pulls = plan(&RingView::new(d, "b"), true);
        assert_eq!(pulls.len(), 4);
        assert!(
            pulls
                .iter()
                .all(|p| p.sources == vec!["127.0.0.2:7070".to_string()])
        );
    }

    #[test]
    fn nothing_is_dropped_while_pending_and_non_owned_partitions_after_commit() {
        assert!(to_drop(&RingView::new(doc(), "b")).is_empty());
        let mut committed = doc();
        committed.table = committed.pending.take().unwrap().table;
        committed.members[2].state = MemberState::Up;
        assert_eq!(to_drop(&RingView::new(committed.clone(), "a")), vec![2]);
        assert_eq!(to_drop(&RingView::new(committed, "c")), vec![1, 3]);
    }
}
