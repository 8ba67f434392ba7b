//! Migration and recovery: the same pull. Every partition this member writes (current table or
//! pending) that it does not hold completely ([`crate::completeness`]) is streamed from a source
//! that does, in bounded batches, and applied newer-wins. Progress is what
//! `GET /internal/v1/migration` reports. After a commit (no pending table), partitions this node
//! no longer owns are dropped.
//!
//! A source serves a partition only while it holds it completely; a restarted or recovering
//! member refuses, so nothing is ever copied from a partial store. When no owner can serve a
//! partition any more (every other owner is down, restarted or refusing and none is `up`), the
//! partition is *lost*: reported as such, never counted as copied.

use super::node::SharedNode;
use super::peers::PeerError;
use crate::completeness::{Needed, PartState};
use crate::ring_state::RingView;
use crate::wire::Decoder;
use futures_util::StreamExt;
use ringcache_common::protocol::ErrorCode;
use ringcache_ring::MemberState;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Entries per batch served by `GET /internal/v1/partitions/{p}`.
pub const SCAN_BATCH: usize = 1024;
/// Partitions pulled concurrently.
pub const PULL_CONCURRENCY: usize = 4;

/// What `GET /internal/v1/migration` answers (see DESIGN.md; fields beyond the contract's are
/// additions the operator uses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    pub epoch: u64,
    pub partitions_total: u64,
    pub partitions_done: u64,
    pub keys: u64,
    pub bytes: u64,
    /// Every partition this member writes is complete here, or lost.
    pub done: bool,
    pub error: Option<String>,
    /// The writer the write fence is waiting on before pulling (`self` for this node's own
    /// old-ring writes), while it waits.
    pub waiting_for: Option<String>,
    /// This process's incarnation (a fresh id per start).
    pub incarnation: String,
    /// Partitions no complete source was left for.
    pub unrecoverable: Vec<u32>,
    /// Every partition of the current table this member owns is complete or lost (`/readyz`).
    pub ready: bool,
    /// Members (ids) that missed a replica write this node acknowledged without them: their copy
    /// is stale until they recover.
    pub stale_replicas: Vec<String>,
}

/// A partition to pull and who may serve it, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    pub partition: u32,
    pub fence_epoch: u64,
    pub generation: u64,
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub addr: String,
    /// The ring says it serves reads (`up`, `leaving`): it is expected to hold the partition.
    pub serving: bool,
}

/// Sources for each needed partition under `view` (pure): every other owner in the current or
/// pending table that is not `down`, serving members first.
pub fn plan(view: &RingView, needed: &[Needed]) -> Vec<Pull> {
    let Some(me) = view.self_index else {
        return Vec::new();
    };
    let doc = &view.doc;
    needed
        .iter()
        .map(|n| {
            let p = n.partition;
            let mut sources: Vec<Source> = Vec::new();
            for &i in doc.owners(p).iter().chain(doc.pending_owners(p)) {
                let Some(m) = doc.members.get(i as usize) else {
                    continue;
                };
                if i == me || m.state == MemberState::Down || m.addr.is_empty() {
                    continue;
                }
                if sources.iter().any(|s| s.addr == m.addr) {
                    continue;
                }
                sources.push(Source {
                    addr: m.addr.clone(),
                    serving: m.state.serves_reads(),
                });
            }
            // Stable: table order (primary first) within each group.
            sources.sort_by_key(|s| !s.serving);
            Pull {
                partition: p,
                fence_epoch: n.fence_epoch,
                generation: n.generation,
                sources,
            }
        })
        .collect()
}

/// Whether no owner of `p` (current or pending) was ever vouched for: none has an incarnation
/// recorded in the ring, so none ever served it, and a write needs a serving owner. Such a
/// partition has never held data and an empty copy is complete (pure).
pub fn never_held(view: &RingView, p: u32) -> bool {
    let doc = &view.doc;
    doc.owners(p).iter().chain(doc.pending_owners(p)).all(|&i| {
        doc.members
            .get(i as usize)
            .is_some_and(|m| m.incarnation.is_none())
    })
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

/// Why one source could not serve a pull.
#[derive(Debug)]
enum PullError {
    /// The source does not hold the partition completely (a definite answer).
    Incomplete(String),
    /// Anything else (connection, timeout, broken stream): it may work later.
    Transient(String),
}

/// Pulls one partition from `addr`, resuming after `cursor`; returns (keys, bytes) applied.
/// Every record received confirms the local entry of its key, so that afterwards the entries
/// the source did not send can be told apart (see [`pull_one`]).
async fn pull_from(
    s: &SharedNode,
    view: &RingView,
    addr: &str,
    p: u32,
    cursor: &mut Option<Vec<u8>>,
) -> Result<(u64, u64), PullError> {
    let from = super::peers::Sender::of(view);
    let mut body = match s.peers.pull(addr, p, cursor.as_deref(), &from).await {
        Ok(r) => r,
        Err(PeerError::Status { status, body, .. }) if status == 503 && is_incomplete(&body) => {
            return Err(PullError::Incomplete(format!("{addr}: {body}")));
        }
        Err(e) => return Err(PullError::Transient(e.to_string())),
    };
    let transient = |e: String| PullError::Transient(format!("{addr}: {e}"));
    let mut dec = Decoder::with_bounds(
        usize::try_from(s.max_value_size).unwrap_or(usize::MAX),
        usize::try_from(s.max_collection_size).unwrap_or(usize::MAX),
    );
    let (mut keys, mut bytes) = (0u64, 0u64);
    loop {
        // A source that stops sending (a half-open connection) fails the pull instead of
        // hanging the migration forever.
        let Ok(chunk) = tokio::time::timeout(s.pull_idle_timeout, body.next()).await else {
            return Err(transient(format!(
                "no data for {:?} while pulling",
                s.pull_idle_timeout
            )));
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk.map_err(|e| transient(e.to_string()))?;
        dec.feed(&chunk).map_err(|e| transient(e.to_string()))?;
        while let Some(rec) = dec.next_record().map_err(|e| transient(e.to_string()))? {
            let size = rec.key.len() + rec.value.as_ref().map_or(0, |v| v.len());
            let applied = s
                .engine
                .apply(&rec, s.clock.now_ms())
                .map_err(|e| transient(format!("applying pulled entry: {e}")))?;
            if applied == crate::engine::Applied::Stale {
                s.engine.confirm(&rec.key);
            }
            keys += 1;
            bytes += size as u64;
            s.metrics.migration_keys.fetch_add(1, Ordering::Relaxed);
            s.metrics
                .migration_bytes
                .fetch_add(size as u64, Ordering::Relaxed);
            *cursor = Some(rec.key.to_vec());
        }
    }
    dec.finish().map_err(|e| transient(e.to_string()))?;
    Ok((keys, bytes))
}

fn is_incomplete(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v["code"] == ErrorCode::Incomplete.as_str())
}

/// The write fence: waits until this node and every other member that takes writes serve with
/// at least `fence_epoch` and coordinate no write routed under an older ring (see `fence`). From
/// then on every write of the partitions to pull also reaches this node, and every earlier one
/// has landed at the owners it pulls from, so a pull started afterwards misses nothing. A peer
/// already on a newer ring teaches it to this node first. Returns false if the ring changed.
async fn wait_for_peers(s: &SharedNode, view: &RingView, fence_epoch: u64) -> bool {
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
        if super::fence::settled(fence_epoch, s.ring.epoch(), s.writes.oldest()) {
            break;
        }
        s.progress.lock().waiting_for = Some("self".into());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for addr in peers {
        loop {
            if s.ring.epoch() != e {
                return false;
            }
            match s
                .peers
                .writer_state(addr, &super::peers::Sender::of(view))
                .await
            {
                Ok((epoch, _)) if epoch > e => {
                    // This node is behind: pulling under its ring could miss writes the newer
                    // one routes elsewhere. Learn the newer ring, then plan again.
                    super::epochs::observe_epoch(s, Some(epoch), addr);
                }
                Ok((epoch, oldest)) if super::fence::settled(fence_epoch, epoch, oldest) => break,
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
            s.progress.lock().waiting_for = Some(addr.to_string());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    s.progress.lock().waiting_for = None;
    true
}

/// How one partition's pull ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Complete,
    Lost,
    /// Not now: a source may still become available (the ring still names one as serving, or
    /// one could not be reached). The task tries again.
    Later,
}

/// Pulls one partition, trying each source, and records the outcome.
///
/// Once the whole partition has arrived, local entries the source did not send and that are
/// older than the tombstone grace are removed: the source forgot them (a delete whose tombstone
/// it has purged, or an eviction), and keeping them would bring a deleted value back from an old
/// snapshot or from this node's life before it went down. Younger unconfirmed entries stay: they
/// may be writes still on their way to the source.
async fn pull_one(s: &SharedNode, view: &Arc<RingView>, pull: Pull) -> Outcome {
    let started = s.engine.current_tick();
    let mut cursor = None;
    let mut last_err = None;
    for attempt in 0..3u32 {
        let mut transient = false;
        for src in &pull.sources {
            match pull_from(s, view, &src.addr, pull.partition, &mut cursor).await {
                Ok((k, b)) => {
                    {
                        let mut st = s.progress.lock();
                        st.keys += k;
                        st.bytes += b;
                    }
                    let now = s.clock.now_ms();
                    let horizon = crate::engine::hlc::compose(
                        now.saturating_sub(s.engine.config().tombstone_grace_ms),
                        0,
                    );
                    let removed = s
                        .engine
                        .remove_unconfirmed(pull.partition, started, horizon)
                        .unwrap_or(0);
                    if removed > 0 {
                        tracing::info!(
                            partition = pull.partition,
                            removed,
                            "removed old entries the complete source no longer has"
                        );
                    }
                    let ok = s.ring.completeness().finish(
                        pull.partition,
                        pull.generation,
                        PartState::Complete,
                    );
                    if ok {
                        s.metrics
                            .migration_partitions
                            .fetch_add(1, Ordering::Relaxed);
                        return Outcome::Complete;
                    }
                    // Continuity broke while pulling (this member went down, or the partition
                    // moved away): what was copied proves nothing.
                    return Outcome::Later;
                }
                Err(PullError::Incomplete(e)) => {
                    tracing::debug!(partition = pull.partition, source = %src.addr, error = %e, "source does not hold the partition");
                    last_err = Some(e);
                }
                Err(PullError::Transient(e)) => {
                    tracing::warn!(partition = pull.partition, source = %src.addr, attempt, error = %e, "pull failed");
                    last_err = Some(e);
                    transient = true;
                }
            }
        }
        if !transient && !pull.sources.iter().any(|src| src.serving) {
            // Every owner that is not down answered that it holds the partition incompletely,
            // and none is serving: nothing complete is left anywhere, unless nothing was ever
            // there (no owner was ever vouched for, and writes need a serving owner).
            if never_held(view, pull.partition) {
                let ok = s.ring.completeness().finish(
                    pull.partition,
                    pull.generation,
                    PartState::Complete,
                );
                return if ok {
                    Outcome::Complete
                } else {
                    Outcome::Later
                };
            }
            let recorded =
                s.ring
                    .completeness()
                    .finish(pull.partition, pull.generation, PartState::Lost);
            if recorded {
                s.metrics.partitions_lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    partition = pull.partition,
                    epoch = view.epoch(),
                    sources = pull.sources.len(),
                    "partition unrecoverable: no complete copy left"
                );
                return Outcome::Lost;
            }
            return Outcome::Later;
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    s.progress.lock().error = last_err.map(|e| format!("partition {}: {e}", pull.partition));
    Outcome::Later
}

/// One round: fence, then pull every needed partition. Returns false when work remains.
async fn execute(s: &SharedNode, view: &Arc<RingView>, needed: Vec<Needed>) -> bool {
    {
        let mut pr = s.progress.lock();
        if pr.closed {
            *pr = super::node::Progress::default();
        }
        pr.round.extend(needed.iter().map(|n| n.partition));
        pr.error = None;
    }
    let pulls = plan(view, &needed);
    let fence_epoch = pulls.iter().map(|p| p.fence_epoch).max().unwrap_or(0);
    let any_source = pulls.iter().any(|p| !p.sources.is_empty());
    if any_source && !wait_for_peers(s, view, fence_epoch).await {
        return false;
    }
    tracing::info!(
        epoch = view.epoch(),
        partitions = pulls.len(),
        "pulling partitions"
    );
    // A few partitions at a time: one stream per partition keeps memory bounded, several hide the
    // per-batch round trips.
    let outcomes: Vec<Outcome> = futures_util::stream::iter(pulls)
        .map(|pull| pull_one(s, view, pull))
        .buffer_unordered(PULL_CONCURRENCY)
        .collect()
        .await;
    outcomes.iter().all(|o| *o != Outcome::Later)
}

/// The report of `GET /internal/v1/migration`, read from the completeness of the current ring.
pub fn status(s: &SharedNode) -> MigrationStatus {
    let view = s.ring.get();
    let completeness = s.ring.completeness();
    let summary = completeness.summary(&view);
    let needed = completeness.needed().len() as u64;
    let pr = s.progress.lock();
    let total = (pr.round.len() as u64).max(needed);
    MigrationStatus {
        epoch: summary.epoch,
        partitions_total: total,
        partitions_done: if summary.done { total } else { total - needed },
        keys: pr.keys,
        bytes: pr.bytes,
        done: summary.done,
        error: if summary.done { None } else { pr.error.clone() },
        waiting_for: pr.waiting_for.clone(),
        incarnation: completeness.incarnation().to_string(),
        unrecoverable: completeness.lost(),
        ready: summary.ready && !(s.expects_ring && view.epoch() == 0),
        stale_replicas: s.replication.stale_members(&view),
    }
}

/// The migration task: runs for the life of the process, after every ring change and every
/// second while work remains.
pub async fn run(s: SharedNode) {
    let mut dropped_for: Option<u64> = None;
    loop {
        let view = s.ring.get();
        let needed = s.ring.completeness().needed();
        let finished = if needed.is_empty() {
            true
        } else {
            execute(&s, &view, needed).await
        };
        if finished && s.ring.completeness().needed().is_empty() {
            let mut pr = s.progress.lock();
            if !pr.closed && !pr.round.is_empty() {
                tracing::info!(
                    epoch = s.ring.epoch(),
                    partitions = pr.round.len(),
                    keys = pr.keys,
                    "every partition is complete or lost"
                );
            }
            pr.closed = true;
            pr.error = None;
        }
        if dropped_for != Some(view.epoch()) && view.doc.pending.is_none() {
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
            dropped_for = Some(view.epoch());
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
            incarnation: None,
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

    fn needed(ps: &[u32]) -> Vec<Needed> {
        ps.iter()
            .map(|&partition| Needed {
                partition,
                fence_epoch: 3,
                generation: 0,
            })
            .collect()
    }

    fn src(n: u8, serving: bool) -> Source {
        Source {
            addr: format!("127.0.0.{n}:7070"),
            serving,
        }
    }

    #[test]
    fn a_gainer_pulls_from_the_current_owners_first() {
        let view = RingView::new(doc(), "c");
        let pulls = plan(&view, &needed(&[0, 2]));
        assert_eq!(pulls[0].sources, vec![src(2, true), src(3, true)]);
        assert_eq!(pulls[1].sources, vec![src(2, true), src(3, true)]);
    }

    #[test]
    fn recovering_members_are_sources_of_last_resort_and_down_ones_never() {
        let mut d = doc();
        d.pending = None;
        d.members[2].state = MemberState::Up;
        d.members[0].state = MemberState::Recovering;
        d.table[2] = vec![0, 1];
        let pulls = plan(&RingView::new(d.clone(), "b"), &needed(&[0]));
        assert_eq!(pulls[0].sources, vec![src(2, false)]);
        d.members[0].state = MemberState::Down;
        let pulls = plan(&RingView::new(d, "b"), &needed(&[0]));
        assert!(pulls[0].sources.is_empty());
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

    #[test]
    fn a_partition_is_never_held_only_if_no_owner_was_ever_vouched_for() {
        let mut d = doc();
        d.pending = None;
        d.members[2].state = MemberState::Up;
        assert!(never_held(&RingView::new(d.clone(), "b"), 0));
        d.members[1].incarnation = Some("b-1".into());
        let v = RingView::new(d, "b");
        assert!(!never_held(&v, 0), "b owns 0 and was vouched for");
        assert!(!never_held(&v, 1));
    }

    #[test]
    fn only_an_incomplete_answer_counts_as_a_refusal() {
        assert!(is_incomplete(r#"{"error":"x","code":"incomplete"}"#));
        assert!(!is_incomplete(r#"{"error":"x","code":"unavailable"}"#));
        assert!(!is_incomplete("gateway timeout"));
    }
}
