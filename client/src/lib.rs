//! Ring-aware client for ringcache.
//!
//! [`Client::connect`] fetches the ring (`GET /v1/ring`) from any seed node and then sends each
//! key straight to a node that owns it: reads to the first owner that serves reads, writes to the
//! primary (which replicates). On a connection error, a timeout or a retryable 5xx it tries the next
//! owner, then any other live member (nodes forward), then the seeds. A response whose
//! [`EPOCH_HEADER`] names a newer ring epoch makes the client fetch the ring again, as does a
//! request that no node could serve.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ringcache_client::Error> {
//! let client = ringcache_client::Client::connect(["http://127.0.0.1:7070"]).await?;
//! client.set("greeting", "hello", Some(std::time::Duration::from_secs(30))).await?;
//! assert_eq!(client.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
//! client.del("greeting").await?;
//! # Ok(()) }
//! ```

mod client;
pub mod duration;
mod endpoint;
mod error;
pub mod route;
pub mod summary;

pub use client::{Client, ClientBuilder, EPOCH_HEADER, NodeStats};
pub use error::{Attempt, Error};
