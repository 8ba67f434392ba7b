//! The operator's own HTTP endpoints: `/metrics`, `/healthz` (process alive), `/readyz`
//! (connected to the API server and, with leader election, either leading or standing by).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
    pub leader: AtomicBool,
}

impl HttpState {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(HttpState {
            metrics,
            ready: AtomicBool::new(false),
            leader: AtomicBool::new(false),
        })
    }
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    state
        .metrics
        .set_leader(state.leader.load(Ordering::Relaxed));
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(state: Arc<HttpState>, path: &str) -> (StatusCode, String) {
        let resp = router(state)
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readyz_follows_the_ready_flag() {
        let state = HttpState::new(Arc::new(Metrics::default()));
        assert_eq!(
            get(state.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.ready.store(true, Ordering::Relaxed);
        assert_eq!(get(state.clone(), "/readyz").await.0, StatusCode::OK);
        assert_eq!(get(state, "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let state = HttpState::new(Arc::new(Metrics::default()));
        state.leader.store(true, Ordering::Relaxed);
        let (status, body) = get(state, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("ringcache_operator_reconciles_total 0"));
        assert!(body.contains("ringcache_operator_leader 1"));
    }
}
