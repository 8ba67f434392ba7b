//! Read-only operational routes: ring, stats, health, readiness, metrics.

use super::{ApiError, SharedState};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::atomic::Ordering;

pub async fn ring(State(s): State<SharedState>) -> Response {
    let view = s.ring.get();
    (
        [(header::CONTENT_TYPE, "application/json")],
        view.json.clone(),
    )
        .into_response()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub node_id: String,
    #[serde(flatten)]
    pub engine: crate::engine::EngineStats,
    pub partitions_owned: u64,
    pub epoch: u64,
    pub ready: bool,
}

pub fn stats_of(s: &SharedState) -> Stats {
    let view = s.ring.get();
    Stats {
        node_id: s.ring.node_id().to_string(),
        engine: s.engine.stats(),
        partitions_owned: view.partitions_owned() as u64,
        epoch: view.epoch(),
        ready: s.ready.load(Ordering::Acquire),
    }
}

pub async fn stats(State(s): State<SharedState>) -> Json<Stats> {
    Json(stats_of(&s))
}

/// Liveness, plus what a migrating peer's write fence needs: this node's epoch and the oldest
/// epoch of any write it still coordinates, read in that order (see `cluster::fence`).
pub async fn healthz(State(s): State<SharedState>) -> Json<serde_json::Value> {
    let epoch = s.ring.epoch();
    let oldest = s.writes.oldest();
    Json(serde_json::json!({ "status": "ok", "epoch": epoch, "oldestWriteEpoch": oldest }))
}

pub async fn readyz(State(s): State<SharedState>) -> Result<Json<serde_json::Value>, ApiError> {
    if s.ready.load(Ordering::Acquire) {
        Ok(Json(
            serde_json::json!({ "ready": true, "epoch": s.ring.epoch() }),
        ))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "ring not loaded or recovery not finished",
        ))
    }
}

pub async fn metrics(State(s): State<SharedState>) -> Response {
    let st = stats_of(&s);
    let snap = crate::metrics::Snapshot {
        hits: st.engine.hits,
        misses: st.engine.misses,
        items: st.engine.items,
        tombstones: st.engine.tombstones,
        bytes: st.engine.bytes,
        max_memory: st.engine.max_memory,
        evictions: st.engine.evictions,
        expired: st.engine.expired,
        epoch: st.epoch,
        partitions_owned: st.partitions_owned,
        ready: st.ready,
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(&snap),
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
