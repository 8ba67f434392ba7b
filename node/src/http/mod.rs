//! The HTTP API of DESIGN.md on axum. Handlers are thin: validation here, storage in
//! [`crate::engine`], ring rules in [`crate::ring_state`].

mod admin;
mod auth;
mod batch;
mod body;
pub mod error;
mod internal;
mod keys;
mod track;

pub use batch::{BatchResponse, MAX_BATCH_OPS, OpResult};
pub use error::ApiError;
pub use keys::{check_key, check_ttl};

use crate::clock::Clock;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::ring_state::RingState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get, post, put};
use std::sync::Arc;

/// Everything a handler can reach.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub ring: Arc<RingState>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub max_value_size: u64,
    pub auth_token: Option<String>,
    pub internal_token: Option<String>,
    /// Writes this node coordinates, by routing epoch (the migration fence).
    pub writes: Arc<crate::cluster::fence::WritesInFlight>,
    /// A ring file was configured: until a ring from it (epoch ≥ 1) is installed, the one-member
    /// placeholder ring must not be used to store or serve keys, or a write could be acknowledged
    /// by a node that owns nothing.
    pub expects_ring: bool,
    /// Woken whenever a newer ring is installed.
    pub ring_changed: tokio::sync::Notify,
    pub peers: crate::cluster::peer::Peers,
    pub replication: crate::cluster::replication::Replicator,
    pub write_consistency: crate::config::WriteConsistency,
    /// Pull progress since everything was last complete (the rest of the migration report is
    /// read from the ring's completeness).
    pub progress: parking_lot::Mutex<crate::cluster::migration::Progress>,
    /// Highest peer epoch a ring fetch was started for (one fetch per epoch, not per request).
    pub learning_epoch: std::sync::atomic::AtomicU64,
    /// Longest a partition pull may wait for the source's next bytes.
    pub pull_idle_timeout: std::time::Duration,
    /// Memory for request bodies and batch answers held at once.
    pub budget: crate::budget::Budget,
}

pub type SharedState = Arc<AppState>;

/// Largest batch (and replica write) body: room for several values of the maximum size, at
/// least 16 MiB.
pub(crate) fn batch_body_limit(max_value_size: u64) -> usize {
    (max_value_size.saturating_mul(4).max(16 << 20)).min(usize::MAX as u64) as usize
}

pub fn router(state: SharedState) -> Router {
    let value_limit = state.max_value_size.min(usize::MAX as u64) as usize;
    let mut public = Router::new()
        .route(
            "/v1/keys/{key}",
            get(keys::get)
                .put(keys::put)
                .delete(keys::delete)
                .layer(DefaultBodyLimit::max(value_limit)),
        )
        .route("/v1/keys/", any(keys::empty_key))
        .route(
            "/v1/batch",
            post(batch::batch).layer(DefaultBodyLimit::max(batch_body_limit(
                state.max_value_size,
            ))),
        )
        .route("/v1/ring", get(admin::ring))
        .route("/v1/stats", get(admin::stats));
    // Only pay for the auth check when a token is configured.
    if state.auth_token.is_some() {
        public = public.route_layer(from_fn_with_state(state.clone(), auth::public));
    }
    let internal = Router::new()
        .route(
            "/internal/v1/ring",
            put(internal::put_ring)
                .get(admin::ring)
                .layer(DefaultBodyLimit::max(crate::cluster::peer::MAX_RING_BYTES)),
        )
        .route(
            "/internal/v1/get",
            post(internal::get_many).layer(DefaultBodyLimit::max(
                4 + crate::wire::MAX_KEYS * (2 + ringcache_ring::MAX_KEY_LEN),
            )),
        )
        .route("/internal/v1/migration", get(internal::migration))
        .route("/internal/v1/abort", post(internal::abort))
        .route("/internal/v1/partitions/{p}", get(internal::partition))
        .route(
            "/internal/v1/apply",
            post(internal::apply).layer(DefaultBodyLimit::max(batch_body_limit(
                state.max_value_size,
            ))),
        )
        .route_layer(from_fn_with_state(state.clone(), auth::internal));
    Router::new()
        .merge(public)
        .merge(internal)
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
        .fallback(admin::not_found)
        .layer(track::TrackLayer {
            state: state.clone(),
        })
        .with_state(state)
}
