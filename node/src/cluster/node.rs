//! The node itself: its store, its ring, its peers and its settings, shared by every front (the
//! HTTP API today) and every background task. The cluster logic in [`crate::cluster`] works on
//! it without knowing how a request arrived.

use super::peers::Peers;
use super::replication::Replicator;
use crate::clock::Clock;
use crate::completeness::Completeness;
use crate::config::NodeConfig;
use crate::engine::{Engine, EngineConfig};
use crate::metrics::Metrics;
use crate::ring_state::RingState;
use ringcache_ring::RingDoc;
use std::sync::Arc;
use std::time::Duration;

/// One node's state.
pub struct Node {
    pub engine: Arc<Engine>,
    pub ring: Arc<RingState>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub max_value_size: u64,
    /// Largest collection in encoded bytes (`--max-collection-size`).
    pub max_collection_size: u64,
    /// Numbered databases (`--databases`).
    pub databases: u32,
    pub auth_token: Option<String>,
    pub internal_token: Option<String>,
    /// Writes this node coordinates, by routing epoch (the migration fence).
    pub writes: Arc<super::fence::WritesInFlight>,
    /// A ring file was configured: until a ring from it (epoch ≥ 1) is installed, the one-member
    /// placeholder ring must not be used to store or serve keys, or a write could be acknowledged
    /// by a node that owns nothing.
    pub expects_ring: bool,
    /// Woken whenever a newer ring is installed.
    pub ring_changed: tokio::sync::Notify,
    pub peers: super::peers::Peers,
    pub replication: super::replication::Replicator,
    /// Clients blocked on keys this node is the first serving owner of.
    pub waiters: super::waiters::Waiters,
    pub write_consistency: crate::config::WriteConsistency,
    /// Pull progress since everything was last complete (the rest of the migration report is
    /// read from the ring's completeness).
    pub progress: parking_lot::Mutex<Progress>,
    /// Highest peer epoch a ring fetch was started for (one fetch per epoch, not per request).
    pub learning_epoch: std::sync::atomic::AtomicU64,
    /// Longest a partition pull may wait for the source's next bytes.
    pub pull_idle_timeout: std::time::Duration,
    /// Memory for request bodies and batch answers held at once.
    pub budget: crate::budget::Budget,
}

pub type SharedNode = Arc<Node>;

/// Progress of the current round of pulls (from the moment something was found missing until
/// everything is complete again; the last round's figures stay until the next begins).
#[derive(Debug, Default)]
pub struct Progress {
    /// Partitions found missing since the round began.
    pub round: std::collections::BTreeSet<u32>,
    /// Everything was complete at the end of the last round: the next miss starts a new one.
    pub closed: bool,
    pub keys: u64,
    pub bytes: u64,
    pub error: Option<String>,
    pub waiting_for: Option<String>,
}

impl Node {
    /// Largest value one record may carry between nodes: a string's bound or a collection's.
    pub fn max_record_value(&self) -> u64 {
        self.max_value_size.max(self.max_collection_size)
    }

    /// The bounds read-modify-write ops run under.
    pub fn op_limits(&self) -> super::ops::Limits {
        super::ops::Limits {
            max_value_size: self.max_value_size,
            max_collection: self.max_collection_size,
        }
    }

    /// A node serving with `ring` (the mounted document, or a placeholder until it arrives) that
    /// reaches the others through `peers`. Starts the replication worker, so it needs a Tokio
    /// runtime; performs no I/O.
    pub fn new(cfg: &NodeConfig, clock: Arc<dyn Clock>, ring: RingDoc, peers: Peers) -> SharedNode {
        let mut ecfg = EngineConfig::new(ring.partitions, cfg.max_memory, cfg.eviction);
        ecfg.tombstone_grace_ms = cfg.tombstone_grace_ms;
        let incarnation = new_incarnation();
        tracing::info!(%incarnation, "incarnation of this process");
        let completeness = Arc::new(Completeness::new(ring.partitions, &incarnation));
        let ring = RingState::new(ring, &cfg.node_id, completeness);
        let metrics = Arc::new(Metrics::new());
        Arc::new(Node {
            engine: Arc::new(Engine::new(ecfg)),
            ring: Arc::new(ring),
            metrics: metrics.clone(),
            clock,
            max_value_size: cfg.max_value_size,
            max_collection_size: cfg.max_collection_size,
            databases: cfg.databases,
            auth_token: cfg.auth_token.clone(),
            internal_token: cfg.internal_token.clone(),
            writes: Arc::default(),
            expects_ring: cfg.ring_file.is_some(),
            ring_changed: tokio::sync::Notify::new(),
            replication: Replicator::start(peers.clone(), metrics),
            waiters: Default::default(),
            peers,
            write_consistency: cfg.write_consistency,
            progress: parking_lot::Mutex::default(),
            learning_epoch: std::sync::atomic::AtomicU64::new(0),
            pull_idle_timeout: Duration::from_millis(cfg.body_idle_timeout_ms),
            budget: crate::budget::Budget::new(cfg.buffer_memory),
        })
    }
}

/// A fresh id per process start (DESIGN.md "incarnation"): 64 random bits from the OS-seeded
/// hasher keys, mixed with the start time and pid so that two starts never share one.
pub fn new_incarnation() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}
