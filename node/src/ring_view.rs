//! One ring document as this node sees it: its own place in it and what the request path needs
//! precomputed.

use bytes::Bytes;
use ringcache_ring::{Member, RingDoc};
use std::sync::Arc;

/// A ring document with what the request path needs precomputed.
#[derive(Debug)]
pub struct RingView {
    pub doc: RingDoc,
    /// This node's index in `doc.members` (None: the ring does not name this node).
    pub self_index: Option<u32>,
    /// `doc` as JSON, served by `GET /v1/ring`.
    pub json: Bytes,
    /// This node's address as the ring names it (empty when not named), shared cheaply with
    /// every coalesced forwarded read.
    pub origin: Arc<str>,
    /// Per partition: this node may serve reads from its own store (precomputed: the request
    /// path must not allocate).
    local_read: Vec<bool>,
    /// Per partition: this node is among the write owners.
    local_write: Vec<bool>,
}

impl RingView {
    pub fn new(doc: RingDoc, node_id: &str) -> RingView {
        let self_index = doc.member_index(node_id).map(|i| i as u32);
        let json = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        let (local_read, local_write) = (0..doc.partitions)
            .map(|p| match self_index {
                Some(i) => (
                    doc.read_owners(p).contains(&i),
                    doc.write_owners(p).contains(&i),
                ),
                None => (false, false),
            })
            .unzip();
        let origin = self_index
            .and_then(|i| doc.members.get(i as usize))
            .map_or(Arc::from(""), |m| Arc::from(m.addr.as_str()));
        RingView {
            doc,
            self_index,
            json,
            origin,
            local_read,
            local_write,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.doc.epoch
    }

    /// Whether this node may answer a read of partition `p` from its own store.
    pub fn serves_read(&self, p: u32) -> bool {
        self.local_read.get(p as usize).copied().unwrap_or(false)
    }

    /// Whether this node must store writes to partition `p`.
    pub fn takes_write(&self, p: u32) -> bool {
        self.local_write.get(p as usize).copied().unwrap_or(false)
    }

    /// `ip:port` of member `i` (empty when unknown).
    pub fn addr(&self, i: u32) -> &str {
        self.doc
            .members
            .get(i as usize)
            .map_or("", |m| m.addr.as_str())
    }

    /// This node's entry in the ring.
    pub fn self_member(&self) -> Option<&Member> {
        self.self_index
            .and_then(|i| self.doc.members.get(i as usize))
    }

    /// This node's own address as the ring knows it.
    pub fn self_addr(&self) -> &str {
        self.self_index.map_or("", |i| self.addr(i))
    }

    pub fn partitions_owned(&self) -> usize {
        self.self_index
            .map_or(0, |i| self.doc.partitions_owned_by(i).len())
    }
}
