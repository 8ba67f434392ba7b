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

use super::error::ApiError;
use super::keys;
use crate::budget::Draw;
use crate::cluster::node::SharedNode;
use crate::cluster::{self, Origin};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures_util::StreamExt;
use ringcache_common::protocol::ErrorCode;
use serde::{Deserialize, Serialize};

/// Most ops accepted in one batch.
pub const MAX_BATCH_OPS: usize = 10_000;
/// Answers held in memory at once for one batch, in value bytes (the answer is streamed: a batch
/// of 10,000 gets of a 1 MiB value is 10 GB of answer, never 10 GB of memory).
const IN_FLIGHT_BYTES: u64 = 32 << 20;
/// Serialized answers queued for the response body (written as the client reads).
const QUEUED_ANSWERS: usize = 16;

/// Gets of one batch run at once: as many as fit in [`IN_FLIGHT_BYTES`] at the largest value
/// size, between 16 (values up to 2 MiB) and 256 (forwarded ones coalesce per owner).
fn concurrent_gets(max_value_size: u64) -> usize {
    (IN_FLIGHT_BYTES / max_value_size.max(1)).clamp(16, 256) as usize
}

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
}

/// Writes a found value's answer (`{"status":200,"value":…}` or `…"valueBase64":…}`) straight
/// from the stored bytes: one copy into the output, none in between.
fn write_found(out: &mut Vec<u8>, v: &[u8]) {
    match std::str::from_utf8(v) {
        Ok(text) => {
            out.extend_from_slice(br#"{"status":200,"value":"#);
            // Serializing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, text);
            out.push(b'}');
        }
        Err(_) => {
            out.extend_from_slice(br#"{"status":200,"valueBase64":""#);
            let start = out.len();
            out.resize(start + v.len().div_ceil(3) * 4, 0);
            let n = B64.encode_slice(v, &mut out[start..]).unwrap_or(0);
            out.truncate(start + n);
            out.extend_from_slice(b"\"}");
        }
    }
}

/// Bytes a found value's answer takes (exact for base64; for text, escaping adds little).
fn found_size(v: &[u8]) -> u64 {
    v.len() as u64 * 4 / 3 + 64
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BatchResponse {
    pub results: Vec<OpResult>,
}

/// Runs the ops in order and streams `{"results": [...]}` as they complete, so that memory
/// stays bounded whatever the answer's size: a slow reader slows the batch down instead.
pub async fn batch(State(s): State<SharedNode>, req: Request) -> Result<Response, ApiError> {
    let origin = keys::origin_of(req.headers());
    let limit = super::body::batch_body_limit(s.max_value_size);
    let (body, draw) = super::body::read(&s, req, limit).await?;
    let req: BatchRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(ErrorCode::BadBatch, format!("invalid batch request: {e}"))
    })?;
    drop((body, draw));
    if req.ops.len() > MAX_BATCH_OPS {
        return Err(ApiError::bad_request(
            ErrorCode::BadBatch,
            format!("{} ops, the maximum is {MAX_BATCH_OPS}", req.ops.len()),
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<(Bytes, Draw)>(QUEUED_ANSWERS);
    tokio::spawn(async move { run_all(&s, req.ops, &origin, &tx).await });
    // Each answer holds its share of the buffer budget until the next one is asked for: by
    // then hyper has passed it on to the socket.
    let stream = futures_util::stream::unfold((rx, None::<Draw>), |(mut rx, held)| async move {
        drop(held);
        rx.recv()
            .await
            .map(|(chunk, draw)| (Ok::<_, std::convert::Infallible>(chunk), (rx, Some(draw))))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// Where the answers go: the response body while the client reads it. Once the client is gone
/// the answers are dropped, but every op still runs: a batch of writes whose answer nobody reads
/// is still a batch of writes.
struct Answers<'a> {
    s: &'a SharedNode,
    tx: &'a tokio::sync::mpsc::Sender<(Bytes, Draw)>,
    first: bool,
    gone: bool,
}

impl Answers<'_> {
    async fn send(&mut self, chunk: Bytes, draw: Draw) {
        if !self.gone && self.tx.send((chunk, draw)).await.is_err() {
            self.gone = true;
        }
    }

    async fn result(&mut self, r: Answer) {
        if self.gone {
            return;
        }
        // The answer's share of the buffer budget, taken before it is serialized.
        let size = match &r {
            Answer::Found(v) => found_size(v),
            _ => 0,
        };
        let Ok(draw) = self.s.budget.draw(size, ANSWER_WAIT).await else {
            // No room for a long time: the reader is too slow for everyone else; stop here.
            self.gone = true;
            return;
        };
        let mut out = Vec::with_capacity(size as usize + 1);
        if !self.first {
            out.push(b',');
        }
        self.first = false;
        match r {
            Answer::Found(v) => write_found(&mut out, &v),
            // Serializing a struct of strings and integers cannot fail.
            Answer::Done(status) => {
                let _ = serde_json::to_writer(&mut out, &OpResult::status(status));
            }
            Answer::Failed(e) => {
                let _ = serde_json::to_writer(&mut out, &OpResult::error(e));
            }
        }
        self.send(Bytes::from(out), draw).await;
    }
}

/// One op's outcome before it is serialized: a found value is still the stored `Bytes` (shared,
/// not copied) until the budget has room for its JSON form.
enum Answer {
    Found(Bytes),
    Done(u16),
    Failed(ApiError),
}

/// How long an answer waits for room in the buffer budget before the batch gives up on its
/// reader.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs every op in order, streaming the opening, each answer (comma-separated, in op order) and
/// the closing to `tx`.
async fn run_all(
    s: &SharedNode,
    ops: Vec<Op>,
    origin: &Origin,
    tx: &tokio::sync::mpsc::Sender<(Bytes, Draw)>,
) {
    let mut out = Answers {
        s,
        tx,
        first: true,
        gone: false,
    };
    out.send(Bytes::from_static(b"{\"results\":["), Draw::none())
        .await;
    let concurrency = concurrent_gets(s.max_value_size);
    let mut ops = ops.into_iter().peekable();
    while let Some(op) = ops.next() {
        if !matches!(op, Op::Get { .. }) {
            let r = run_op(s, op, origin).await;
            out.result(r.unwrap_or_else(Answer::Failed)).await;
            continue;
        }
        // Consecutive gets do not affect each other, so they run together (answers still in
        // op order); the forwarded ones among them are coalesced into one multi-get per owner.
        let mut gets = vec![op];
        while let Some(next) = ops.next_if(|o| matches!(o, Op::Get { .. })) {
            gets.push(next);
        }
        if out.gone {
            // Nobody reads the answers: reads have no effect to carry out.
            continue;
        }
        let mut answers = futures_util::stream::iter(gets)
            .map(|op| run_op(s, op, origin))
            .buffered(concurrency);
        while let Some(r) = answers.next().await {
            out.result(r.unwrap_or_else(Answer::Failed)).await;
        }
    }
    out.send(Bytes::from_static(b"]}"), Draw::none()).await;
}

async fn run_op(s: &SharedNode, op: Op, origin: &Origin) -> Result<Answer, ApiError> {
    match op {
        Op::Get { key } => {
            let k = keys::check_key(&key)?;
            Ok(match cluster::read(s, k, origin.forwarded).await? {
                Some(v) => Answer::Found(v),
                None => Answer::Failed(ApiError::not_found("key not found")),
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
                    ApiError::bad_request(ErrorCode::BadValue, format!("valueBase64: {e}"))
                })?),
                _ => {
                    return Err(ApiError::bad_request(
                        ErrorCode::BadValue,
                        "a set needs exactly one of value or valueBase64",
                    ));
                }
            };
            if v.len() as u64 > s.max_value_size {
                return Err(ApiError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::ValueTooLarge,
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
            Ok(Answer::Done(204))
        }
        Op::Del { key } => {
            let k = keys::check_key(&key)?;
            let w = cluster::Write {
                value: None,
                ttl_ms: None,
            };
            cluster::write(s, k, w, origin).await?;
            Ok(Answer::Done(204))
        }
    }
}
