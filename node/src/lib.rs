//! ringcache node: a partitioned in-memory storage engine ([`engine`]) behind the HTTP API of
//! DESIGN.md ([`http`]), configured by [`config::Args`] and started by [`server::run`].

pub mod budget;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod completeness;
pub mod config;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod quantity;
pub mod resp;
pub mod ring_state;
pub mod ring_view;
pub mod serde_b64;
pub mod serve;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod wire;

/// The node's state, owned by the cluster core: `ringcache_node::node::Node`.
pub use cluster::node;
