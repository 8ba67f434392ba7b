//! Read-only operational routes: ring, stats, health, readiness, metrics.

use super::error::ApiError;
use crate::cluster::node::SharedNode;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ringcache_common::protocol::ErrorCode;
use serde::Serialize;

pub async fn ring(State(s): State<SharedNode>) -> Response {
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

pub fn stats_of(s: &SharedNode) -> Stats {
    let view = s.ring.get();
    Stats {
        node_id: s.ring.node_id().to_string(),
        engine: s.engine.stats(),
        partitions_owned: view.partitions_owned() as u64,
        epoch: view.epoch(),
        ready: crate::cluster::migration::status(s).ready,
    }
}

pub async fn stats(State(s): State<SharedNode>) -> Json<Stats> {
    Json(stats_of(&s))
}

/// Liveness, plus what a migrating peer's write fence needs: this node's epoch and the oldest
/// epoch of any write it still coordinates, read in that order (see `cluster::fence`), and this
/// process's incarnation.
pub async fn healthz(State(s): State<SharedNode>) -> Json<serde_json::Value> {
    let epoch = s.ring.epoch();
    let oldest = s.writes.oldest();
    Json(serde_json::json!({
        "status": "ok",
        "epoch": epoch,
        "oldestWriteEpoch": oldest,
        "incarnation": s.ring.completeness().incarnation(),
    }))
}

/// Ready once the ring is loaded, this member is not `down`, and every partition it owns in the
/// current table is complete here (or recorded lost): never on a ring file's word alone.
pub async fn readyz(State(s): State<SharedNode>) -> Result<Json<serde_json::Value>, ApiError> {
    let st = crate::cluster::migration::status(&s);
    if st.ready {
        Ok(Json(
            serde_json::json!({ "ready": true, "epoch": st.epoch }),
        ))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotReady,
            format!(
                "not ready at epoch {}: ring not loaded, member down, or {} of {} partitions still to copy",
                st.epoch,
                st.partitions_total - st.partitions_done,
                st.partitions_total
            ),
        ))
    }
}

/// Partitions whose first serving owner is this node and that have fewer serving owners than
/// owners: each under-replicated partition is counted by exactly one node.
fn under_replicated(view: &crate::ring_state::RingView) -> u64 {
    let Some(me) = view.self_index else { return 0 };
    (0..view.doc.partitions)
        .filter(|&p| {
            let readers = view.doc.read_owners(p);
            readers.first() == Some(&me) && readers.len() < view.doc.owners(p).len()
        })
        .count() as u64
}

pub async fn metrics(State(s): State<SharedNode>) -> Response {
    let st = stats_of(&s);
    let view = s.ring.get();
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
        unrecoverable: s.ring.completeness().lost().len() as u64,
        under_replicated: under_replicated(&view),
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
