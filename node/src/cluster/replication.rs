//! Asynchronous replication for `writeConsistency: one`: a bounded queue drained by one worker
//! that batches records per target and retries with backoff. Queue length, lag and errors are
//! exported as metrics. When the queue is full the write replicates synchronously instead
//! (back-pressure rather than silently dropping replica writes).
//!
//! A replica write that still fails after its retries leaves that owner without a write this
//! node acknowledged (with `one`, or a `quorum` straggler). The owner is then recorded as
//! *stale* and reported on `/internal/v1/migration`; the operator moves it to `recovering`, which
//! makes it copy its partitions again from complete owners. The record is forgotten once a ring
//! shows that owner `down` or `recovering` (or no longer at that address).

use super::fence::WriteGuard;
use super::peers::{Peers, Sender};
use crate::engine::Record;
use crate::metrics::Metrics;
use crate::ring_state::RingView;
use parking_lot::Mutex;
use ringcache_ring::MemberState;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Queue capacity (records).
pub const QUEUE_CAPACITY: usize = 65_536;
/// Records per replica request.
const BATCH: usize = 256;
const RETRIES: u32 = 5;

struct Item {
    rec: Record,
    targets: Vec<String>,
    from: Sender,
    queued: Instant,
    /// Holds the migration fence until the replica writes are done (sent or given up).
    _guard: WriteGuard,
}

#[derive(Clone)]
pub struct Replicator {
    tx: mpsc::Sender<Item>,
    peers: Peers,
    metrics: Arc<Metrics>,
    stale: Arc<Mutex<BTreeSet<String>>>,
}

impl Replicator {
    /// Creates the queue and spawns its worker (needs a Tokio runtime).
    pub fn start(peers: Peers, metrics: Arc<Metrics>) -> Replicator {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let stale: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        tokio::spawn(worker(rx, peers.clone(), metrics.clone(), stale.clone()));
        Replicator {
            tx,
            peers,
            metrics,
            stale,
        }
    }

    /// Records that the owner at `addr` lacks a write this node acknowledged.
    pub fn mark_stale(&self, addr: &str) {
        mark(&self.stale, &self.metrics, addr);
    }

    /// Forgets stale owners that `view` shows repaired or being repaired.
    pub fn on_ring(&self, view: &RingView) {
        self.stale.lock().retain(|addr| {
            view.doc.members.iter().any(|m| {
                &m.addr == addr && !matches!(m.state, MemberState::Down | MemberState::Recovering)
            })
        });
    }

    /// Member ids of the stale owners, as `view` names them.
    pub fn stale_members(&self, view: &RingView) -> Vec<String> {
        let stale = self.stale.lock();
        view.doc
            .members
            .iter()
            .filter(|m| stale.contains(&m.addr))
            .map(|m| m.id.clone())
            .collect()
    }

    pub async fn enqueue(
        &self,
        rec: Record,
        targets: Vec<String>,
        from: Sender,
        guard: WriteGuard,
    ) {
        let item = Item {
            rec,
            targets,
            from,
            queued: Instant::now(),
            _guard: guard,
        };
        match self.tx.try_send(item) {
            Ok(()) => {
                self.metrics
                    .replication_queue
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(
                mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item),
            ) => {
                for t in &item.targets {
                    if let Err(e) = self
                        .peers
                        .apply(t, std::slice::from_ref(&item.rec), &item.from)
                        .await
                    {
                        self.metrics
                            .replication_errors
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "synchronous fallback replication failed");
                        self.mark_stale(t);
                    }
                }
            }
        }
    }
}

fn mark(stale: &Mutex<BTreeSet<String>>, metrics: &Metrics, addr: &str) {
    if stale.lock().insert(addr.to_string()) {
        metrics
            .stale_replicas_marked
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target_addr = addr,
            "replica missed an acknowledged write; reported as stale until it recovers"
        );
    }
}

async fn worker(
    mut rx: mpsc::Receiver<Item>,
    peers: Peers,
    metrics: Arc<Metrics>,
    stale: Arc<Mutex<BTreeSet<String>>>,
) {
    let mut buf = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut buf, BATCH).await > 0 {
        metrics
            .replication_queue
            .fetch_sub(buf.len() as u64, Ordering::Relaxed);
        if let Some(oldest) = buf.iter().map(|i| i.queued).min() {
            metrics
                .replication_lag_ms
                .store(oldest.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        let mut per_target: HashMap<&str, (Vec<Record>, &Sender)> = HashMap::new();
        for item in &buf {
            for t in &item.targets {
                let e = per_target
                    .entry(t.as_str())
                    .or_insert_with(|| (Vec::new(), &item.from));
                e.0.push(item.rec.clone());
            }
        }
        for (target, (recs, from)) in per_target {
            let mut delay = Duration::from_millis(50);
            for attempt in 1..=RETRIES {
                match peers.apply(target, &recs, from).await {
                    Ok(_) => break,
                    Err(e) => {
                        metrics.replication_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(target, attempt, error = %e, "async replication failed");
                        if attempt < RETRIES {
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        } else {
                            mark(&stale, &metrics, target);
                        }
                    }
                }
            }
        }
        buf.clear();
        metrics.replication_lag_ms.store(0, Ordering::Relaxed);
    }
}
