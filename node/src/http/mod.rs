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

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get, post, put};

pub use crate::cluster::node::{Node, SharedNode};

pub fn router(state: SharedNode) -> Router {
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
            post(batch::batch).layer(DefaultBodyLimit::max(body::batch_body_limit(
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
                .layer(DefaultBodyLimit::max(crate::cluster::peers::MAX_RING_BYTES)),
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
            post(internal::apply).layer(DefaultBodyLimit::max(body::batch_body_limit(
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
