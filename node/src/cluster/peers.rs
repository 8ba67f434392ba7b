//! What this node asks of its peers, independent of how it reaches them: the cluster logic calls
//! [`PeerApi`]; [`super::peer::HttpPeers`] implements it over HTTP(S), and tests implement it with
//! fakes that fail, stall or answer late.

use crate::engine::Record;
use crate::ring_view::RingView;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use std::sync::Arc;

/// Largest ring document accepted from anywhere (65 536 partitions × 7 owners fit easily).
pub const MAX_RING_BYTES: usize = 16 << 20;

/// Who is asking: the asking node's ring epoch (a peer learns newer rings from it) and its own
/// address as the ring names it (so a peer learning of a newer epoch knows whom to ask).
#[derive(Debug, Clone)]
pub struct Sender {
    pub epoch: u64,
    pub origin: Arc<str>,
}

impl Sender {
    /// This node, as `view` names it.
    pub fn of(view: &RingView) -> Sender {
        Sender {
            epoch: view.epoch(),
            origin: view.origin.clone(),
        }
    }
}

/// A key write passed on to an owner.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Set { value: Bytes, ttl_ms: Option<u64> },
    Delete,
}

/// An owner's answer to a forwarded write: its status (below 500; 5xx are errors), its body and
/// the ring epoch it serves with, if it said.
#[derive(Debug)]
pub struct Forwarded {
    pub status: u16,
    pub body: Bytes,
    pub epoch: Option<u64>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// No answer: connection refused or reset, timeout, TLS failure, a malformed answer.
    #[error("{addr}: {message}")]
    Unreachable { addr: String, message: String },
    /// The peer answered with this status (and its error body).
    #[error("{addr} answered {status}: {body}")]
    Status {
        addr: String,
        status: u16,
        body: String,
    },
    #[error("peer address is unknown")]
    NoAddr,
}

impl PeerError {
    /// Whether another owner should be tried (no answer, or a 5xx), as opposed to an answer that
    /// would be the same anywhere.
    pub fn retryable(&self) -> bool {
        match self {
            PeerError::Status { status, .. } => *status >= 500,
            _ => true,
        }
    }
}

/// A forwarded read's answer: the value (None: the owner has no such key) and the owner's
/// epoch.
pub type ReadAnswer = (Option<Bytes>, Option<u64>);

/// A partition's record stream, as it arrives.
pub type RecordStream = BoxStream<'static, Result<Bytes, PeerError>>;

/// The calls a node makes to another. Every call carries the internal token; a client's own
/// credentials never leave the node.
pub trait PeerApi: Send + Sync {
    /// Reads `key` from its owner at `addr`. `Ok(None)`: the owner serves the key's partition
    /// and has no such key. Also returns the owner's epoch.
    fn read<'a>(
        &'a self,
        addr: &'a str,
        key: &'a [u8],
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<ReadAnswer, PeerError>>;

    /// Passes a client's write of `key` on to the owner at `addr`, marked as forwarded.
    fn write<'a>(
        &'a self,
        addr: &'a str,
        key: &'a [u8],
        op: &'a WriteOp,
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<Forwarded, PeerError>>;

    /// Passes a client's read-modify-write of `key` on to the owner at `addr`, marked as
    /// forwarded; a 2xx body is the JSON [`super::ops::Outcome`].
    fn op<'a>(
        &'a self,
        addr: &'a str,
        key: &'a [u8],
        op: &'a super::ops::KeyOp,
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<Forwarded, PeerError>>;

    /// Asks `addr` for the keys of some partitions (`POST /internal/v1/keyspace`); a 2xx body
    /// is the JSON [`super::keyspace_query::Answer`].
    fn keyspace<'a>(
        &'a self,
        addr: &'a str,
        q: &'a super::keyspace_query::Query,
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<Forwarded, PeerError>>;

    /// Replica write of `records` (already versioned here). Returns the peer's epoch.
    fn apply<'a>(
        &'a self,
        addr: &'a str,
        records: &'a [Record],
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<Option<u64>, PeerError>>;

    /// Partition `p`'s records from `addr`, in key order after `after`.
    fn pull<'a>(
        &'a self,
        addr: &'a str,
        p: u32,
        after: Option<&'a [u8]>,
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<RecordStream, PeerError>>;

    /// The ring epoch `addr` serves with and the oldest epoch of the writes it still
    /// coordinates (the migration fence).
    fn writer_state<'a>(
        &'a self,
        addr: &'a str,
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<(u64, Option<u64>), PeerError>>;

    /// The ring document `addr` serves with, at most [`MAX_RING_BYTES`].
    fn fetch_ring<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<Bytes, PeerError>>;
}

/// How nodes are reached from here.
pub type Peers = Arc<dyn PeerApi>;
