//! The HTTP API of DESIGN.md on axum. Handlers are thin: validation here, storage in
//! [`crate::engine`], ring rules in [`crate::ring_state`].

mod admin;
mod auth;
mod batch;
mod body;
pub mod error;
mod internal;
mod keys;
mod names;
mod track;

pub use batch::{BatchResponse, MAX_BATCH_OPS, OpResult};
pub use error::ApiError;
pub use keys::{check_key, check_ttl};

use crate::metrics::{ROUTES, Route};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
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
    let batch_limit = DefaultBodyLimit::max(body::batch_body_limit(max_value_size));
    Some(match route {
        // GET/PUT/DELETE of a key are answered by `direct` before the router (with the same
        // client token check); the router answers the rest of this path (HEAD, other methods).
        // A layer added to these three routes would not apply to them.
        Route::KeyGet => (get(keys::get), Access::Client),
        // No `DefaultBodyLimit` layer: the handler reads the raw body within the value limit
        // itself, and a layer would box this route's service once more per request.
        Route::KeyPut => (put(keys::put), Access::Client),
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
        Route::InternalKeyspace => (post(internal::keyspace), Access::Internal),
        Route::Other => return None,
    })
}

/// The API as served: the routes of [`ROUTES`] (so every route has its metrics label), with the
/// token checks of each group, under the tracking layer (metrics, epoch exchange), which wraps
/// the router once as a whole and answers the key routes itself ([`direct`]).
pub type App = track::Track<Router>;

pub fn app(state: SharedNode) -> App {
    track::Track::new(routes(state.clone()), state)
}

/// [`app`] as an axum `Router` (its only service), for callers that want one (tests, tools).
pub fn router(state: SharedNode) -> Router {
    Router::new().fallback_service(app(state))
}

/// The future of a request answered without the router.
type Direct = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

/// `GET/PUT/DELETE /v1/keys/{key}`, nearly all requests, answered by their handlers without the
/// router: the tracking layer has already matched the route by method and path (for its
/// label), and the router would match it again, then copy the path parameter, record the
/// matched path and clone the route's boxed handler, allocating for each. Nothing of that is
/// used: the handlers read the key from the path, and hyper writes the `content-length` the
/// router's answer would have carried. Any other request (HEAD, a method the route does not
/// serve, ...) goes to the router, which answers as before.
fn direct(route: Route) -> Option<fn(SharedNode, Request) -> Direct> {
    use axum::response::IntoResponse;
    Some(match route {
        Route::KeyGet => |s, req| {
            Box::pin(async move {
                match auth::public_denied(&s, &req) {
                    Some(denied) => denied,
                    None => keys::get(State(s), req).await,
                }
            })
        },
        Route::KeyPut => |s, req| {
            Box::pin(async move {
                match auth::public_denied(&s, &req) {
                    Some(denied) => denied,
                    None => keys::put(State(s), req).await.into_response(),
                }
            })
        },
        Route::KeyDelete => |s, req| {
            Box::pin(async move {
                match auth::public_denied(&s, &req) {
                    Some(denied) => denied,
                    None => keys::delete(State(s), req).await.into_response(),
                }
            })
        },
        _ => return None,
    })
}

fn routes(state: SharedNode) -> Router {
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
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    /// The route of a request, as the tracking layer classifies it from method and path before
    /// routing, is the one axum's router matches (its `MatchedPath`) for a set of awkward paths.
    #[tokio::test]
    async fn classification_agrees_with_the_router() {
        use axum::extract::MatchedPath;
        use axum::http::Method;
        let mut matcher = Router::new();
        let mut seen = std::collections::HashSet::new();
        for (_, _, path) in ROUTES {
            if path != "other" && seen.insert(path) {
                matcher = matcher.route(
                    path,
                    // In a header: HEAD answers have no body.
                    any(|p: Option<MatchedPath>| async move {
                        [(
                            "x-matched",
                            p.map(|p| p.as_str().to_string()).unwrap_or_default(),
                        )]
                    }),
                );
            }
        }
        let matcher = matcher.fallback(|| async { [("x-matched", "")] });
        let paths = [
            "/v1/keys/a",
            "/v1/keys/a%2Fb",
            "/v1/keys/%",
            "/v1/keys/a/b",
            "/v1/keys/",
            "/v1/keys",
            "/v1/keys//",
            "/v1/keys/a/",
            "/v1/batch",
            "/v1/batch/",
            "/v1/ring",
            "/v1/stats",
            "/healthz",
            "/readyz",
            "/metrics",
            "/internal/v1/ring",
            "/internal/v1/get",
            "/internal/v1/migration",
            "/internal/v1/abort",
            "/internal/v1/partitions/3",
            "/internal/v1/partitions/",
            "/internal/v1/partitions/3/4",
            "/internal/v1/apply",
            "/internal/v1/op",
            "/",
            "/V1/keys/a",
            "/nope",
        ];
        for path in paths {
            for method in [
                Method::GET,
                Method::PUT,
                Method::POST,
                Method::DELETE,
                Method::HEAD,
            ] {
                let resp = matcher
                    .clone()
                    .oneshot(
                        Request::builder()
                            .method(method.clone())
                            .uri(path)
                            .body(Body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let matched = resp.headers()["x-matched"].to_str().unwrap();
                // What the metrics layer did with the router's match before.
                let want = ROUTES
                    .iter()
                    .find(|(_, m, p)| {
                        !matched.is_empty() && *p == matched && (*m == method.as_str() || *m == "*")
                    })
                    .map_or(Route::Other, |(r, _, _)| *r);
                assert_eq!(Route::of(&method, path), want, "{method} {path}");
            }
        }
    }

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
