//! `POST /v1/batch`: many gets, sets and deletes in one JSON request.
//!
//! Request: `{"ops": [{"op": "get", "key": "a"}, {"op": "set", "key": "b", "value": "text",
//! "ttl": "30s"}, {"op": "set", "key": "c", "valueBase64": "AAEC"}, {"op": "del", "key": "d"}]}`.
//! A set carries either `value` (a UTF-8 string, stored as its bytes) or `valueBase64` (any bytes).
//! Response: `{"results": [...]}` in op order; each result has `status` (200, 204, 404, or the error
//! status the single-key route would give) and, for a found get, `value` when the bytes are UTF-8
//! or `valueBase64` otherwise; errors carry `error` and `code`. A compact binary body is not
//! implemented: JSON only. Runs of consecutive gets are read concurrently; sets and deletes run one
//! after another in op order.

use super::{ApiError, SharedState, error::body_rejection, keys};
use crate::cluster::{self, Origin};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// Most ops accepted in one batch.
pub const MAX_BATCH_OPS: usize = 10_000;
/// Gets of one batch in flight at once.
const CONCURRENT_GETS: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    Get {
        key: String,
    },
    Set {
        key: String,
        value: Option<String>,
        #[serde(rename = "valueBase64")]
        value_base64: Option<String>,
        ttl: Option<String>,
    },
    Del {
        key: String,
    },
}

#[derive(Debug, Deserialize)]
pub struct BatchRequest {
    pub ops: Vec<Op>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OpResult {
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(rename = "valueBase64", skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl OpResult {
    fn status(status: u16) -> OpResult {
        OpResult {
            status,
            ..Default::default()
        }
    }

    fn error(e: ApiError) -> OpResult {
        OpResult {
            status: e.status.as_u16(),
            error: Some(e.message),
            code: Some(e.code.to_string()),
            ..Default::default()
        }
    }

    fn found(v: &Bytes) -> OpResult {
        match std::str::from_utf8(v) {
            Ok(s) => OpResult {
                status: 200,
                value: Some(s.to_string()),
                ..Default::default()
            },
            Err(_) => OpResult {
                status: 200,
                value_base64: Some(B64.encode(v)),
                ..Default::default()
            },
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BatchResponse {
    pub results: Vec<OpResult>,
}

pub async fn batch(
    State(s): State<SharedState>,
    h: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchResponse>, ApiError> {
    let body = body.map_err(body_rejection)?;
    let req: BatchRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("bad_batch", format!("invalid batch request: {e}")))?;
    if req.ops.len() > MAX_BATCH_OPS {
        return Err(ApiError::bad_request(
            "bad_batch",
            format!("{} ops, the maximum is {MAX_BATCH_OPS}", req.ops.len()),
        ));
    }
    let origin = keys::origin_of(&h);
    let mut results = Vec::with_capacity(req.ops.len());
    let mut ops = req.ops.into_iter().peekable();
    while let Some(op) = ops.next() {
        if !matches!(op, Op::Get { .. }) {
            results.push(
                run_op(&s, op, &origin)
                    .await
                    .unwrap_or_else(OpResult::error),
            );
            continue;
        }
        // Consecutive gets do not affect each other, so they run together (results still in
        // op order); the forwarded ones among them are coalesced into one multi-get per owner.
        let mut gets = vec![op];
        while let Some(next) = ops.next_if(|o| matches!(o, Op::Get { .. })) {
            gets.push(next);
        }
        let mut answers = futures_util::stream::iter(gets)
            .map(|op| run_op(&s, op, &origin))
            .buffered(CONCURRENT_GETS);
        while let Some(r) = answers.next().await {
            results.push(r.unwrap_or_else(OpResult::error));
        }
    }
    Ok(Json(BatchResponse { results }))
}

async fn run_op(s: &SharedState, op: Op, origin: &Origin) -> Result<OpResult, ApiError> {
    match op {
        Op::Get { key } => {
            let k = keys::check_key(&key)?;
            Ok(match cluster::read(s, k, origin.forwarded).await? {
                Some(v) => OpResult::found(&v),
                None => OpResult::error(ApiError::not_found("key not found")),
            })
        }
        Op::Set {
            key,
            value,
            value_base64,
            ttl,
        } => {
            let k = keys::check_key(&key)?;
            let ttl = ttl.as_deref().map(keys::check_ttl).transpose()?;
            let v = match (value, value_base64) {
                (Some(v), None) => Bytes::from(v),
                (None, Some(b)) => Bytes::from(B64.decode(b.as_bytes()).map_err(|e| {
                    ApiError::bad_request("bad_value", format!("valueBase64: {e}"))
                })?),
                _ => {
                    return Err(ApiError::bad_request(
                        "bad_value",
                        "a set needs exactly one of value or valueBase64",
                    ));
                }
            };
            if v.len() as u64 > s.max_value_size {
                return Err(ApiError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "value_too_large",
                    format!(
                        "value is {} bytes, the maximum is {}",
                        v.len(),
                        s.max_value_size
                    ),
                ));
            }
            let w = cluster::Write {
                value: Some(v),
                ttl_ms: ttl,
            };
            cluster::write(s, k, w, origin).await?;
            Ok(OpResult::status(204))
        }
        Op::Del { key } => {
            let k = keys::check_key(&key)?;
            let w = cluster::Write {
                value: None,
                ttl_ms: None,
            };
            cluster::write(s, k, w, origin).await?;
            Ok(OpResult::status(204))
        }
    }
}
