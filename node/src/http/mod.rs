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

use crate::metrics::{ROUTES, Route};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, any, delete, get, post, put};

pub use crate::cluster::node::{Node, SharedNode};

/// Who may call a route.
enum Access {
    /// `/v1/*`: the client token when one is configured.
    Client,
    /// `/internal/v1/*`: the internal token.
    Internal,
    /// Probes and metrics.
    Open,
}

/// The handler of `route` (with its body limit) and who may call it; `None` for the fallback.
/// The match is exhaustive: a new [`Route`] does not compile without its handler here.
fn endpoint(route: Route, max_value_size: u64) -> Option<(MethodRouter<SharedNode>, Access)> {
    let value_limit = DefaultBodyLimit::max(max_value_size.min(usize::MAX as u64) as usize);
    let batch_limit = DefaultBodyLimit::max(body::batch_body_limit(max_value_size));
    Some(match route {
        Route::KeyGet => (get(keys::get), Access::Client),
        Route::KeyPut => (put(keys::put).layer(value_limit), Access::Client),
        Route::KeyDelete => (delete(keys::delete), Access::Client),
        Route::KeyEmpty => (any(keys::empty_key), Access::Client),
        Route::Batch => (post(batch::batch).layer(batch_limit), Access::Client),
        Route::Ring => (get(admin::ring), Access::Client),
        Route::Stats => (get(admin::stats), Access::Client),
        Route::Healthz => (get(admin::healthz), Access::Open),
        Route::Readyz => (get(admin::readyz), Access::Open),
        Route::Metrics => (get(admin::metrics), Access::Open),
        Route::InternalRing => (
            put(internal::put_ring)
                .layer(DefaultBodyLimit::max(crate::cluster::peers::MAX_RING_BYTES)),
            Access::Internal,
        ),
        Route::InternalRingGet => (get(admin::ring), Access::Internal),
        Route::InternalGet => (
            post(internal::get_many).layer(DefaultBodyLimit::max(
                4 + crate::wire::MAX_KEYS * (2 + ringcache_ring::MAX_KEY_LEN),
            )),
            Access::Internal,
        ),
        Route::InternalMigration => (get(internal::migration), Access::Internal),
        Route::InternalAbort => (post(internal::abort), Access::Internal),
        Route::InternalPartition => (get(internal::partition), Access::Internal),
        Route::InternalReplicate => (post(internal::apply).layer(batch_limit), Access::Internal),
        Route::InternalOp => (post(internal::op).layer(batch_limit), Access::Internal),
        Route::Other => return None,
    })
}

/// The API, built from the route table of [`crate::metrics::ROUTES`] (so every route has its
/// metrics label), with the token checks of each group and the tracking layer on everything.
pub fn router(state: SharedNode) -> Router {
    let (mut public, mut internal, mut open) = (Router::new(), Router::new(), Router::new());
    for (route, _, path) in ROUTES {
        let Some((handler, access)) = endpoint(route, state.max_value_size) else {
            continue;
        };
        match access {
            Access::Client => public = public.route(path, handler),
            Access::Internal => internal = internal.route(path, handler),
            Access::Open => open = open.route(path, handler),
        }
    }
    // Only pay for the auth check when a token is configured.
    if state.auth_token.is_some() {
        public = public.route_layer(from_fn_with_state(state.clone(), auth::public));
    }
    let internal = internal.route_layer(from_fn_with_state(state.clone(), auth::internal));
    Router::new()
        .merge(public)
        .merge(internal)
        .merge(open)
        .fallback(admin::not_found)
        .layer(track::TrackLayer {
            state: state.clone(),
        })
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    /// Every route of the table is served by the router and counted under its own label (not
    /// `other`), and a path outside the table is counted as `other`.
    #[tokio::test]
    async fn every_route_is_served_and_labelled() {
        let cfg = crate::config::NodeConfig::for_listen("127.0.0.1:1".parse().unwrap());
        let state =
            crate::server::build_state(&cfg, std::sync::Arc::new(crate::clock::SystemClock))
                .unwrap();
        let app = router(state.clone());
        for (route, method, path) in ROUTES {
            if route == Route::Other {
                continue;
            }
            let method = if method == "*" { "POST" } else { method };
            let uri = path.replace("{key}", "k").replace("{p}", "0");
            // No internal token is configured: internal routes answer 403 without running
            // (the abort route must not abort the test).
            let resp = app
                .clone()
                .oneshot(
                    Request::builder()
                        .method(Method::from_bytes(method.as_bytes()).unwrap())
                        .uri(&uri)
                        .body(Body::from("v"))
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = resp.status().as_u16();
            assert_eq!(
                state.metrics.requests(route, status),
                1,
                "{method} {uri} answered {status} but was not counted as {route:?}"
            );
            assert_eq!(
                state.metrics.requests(Route::Other, status),
                0,
                "{method} {uri}"
            );
        }
        let resp = app
            .oneshot(
                Request::builder()
                    .uri("/no/such/route")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        assert_eq!(state.metrics.requests(Route::Other, 404), 1);
    }
}
