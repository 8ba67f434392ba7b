//! Turning single nodes into a cluster: request routing (local, or forwarded to an owner in one
//! hop with failover), replication of writes to every live write owner per `writeConsistency`,
//! learning newer ring epochs from peers, and migration/recovery pulls ([`migration`]).

//! The pieces: [`route`] (reads and writes: local, forwarded, replicated), [`epochs`] (ring
//! installs and learning newer epochs), [`migration`] (pulls), [`replication`] (the asynchronous
//! queue), [`peers`] (what is asked of other nodes) and [`peer`]/[`coalesce`] (asking it over
//! HTTP), [`fence`] (the migration write fence), [`node`] (the state they share).

pub mod coalesce;
pub mod epochs;
pub mod error;
pub mod fence;
pub mod keyspace;
pub mod keyspace_query;
pub mod migration;
pub mod node;
pub mod ops;
pub mod peer;
pub mod peers;
pub mod replication;
pub mod route;
#[cfg(test)]
mod route_tests;
pub mod waiters;

pub use epochs::{install_ring, observe_epoch};
pub use error::{ClusterError, Op};
pub use ops::{Cond, Expiry, KeyOp, OpError, Outcome, When};
pub use peers::{PeerApi, PeerError, Peers, Sender, WriteOp};
pub use route::{Origin, Write, op, read, required_acks, write};
