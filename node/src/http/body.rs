//! Reading a request body within two bounds: the route's size limit (413 above it, nothing
//! read past it) and the node's buffer budget ([`crate::budget`]), drawn before the body is
//! buffered and held until the handler is done with it.

use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::http::StatusCode;
use bytes::Bytes;
use http_body_util::BodyExt;
use ringcache_common::protocol::ErrorCode;
use std::time::Duration;

use super::error::ApiError;
use crate::budget::Draw;
use crate::cluster::node::SharedNode;

/// Bodies this small are read without drawing on the budget: the connection limit bounds them.
const SMALL: u64 = 4 * 1024;
/// How long a request waits for room in the budget before it gets 503.
const WAIT: Duration = Duration::from_secs(2);

/// The whole body (at most `limit` bytes) and the budget it holds.
pub async fn read(s: &SharedNode, req: Request, limit: usize) -> Result<(Bytes, Draw), ApiError> {
    read_body(s, req.into_body(), limit).await
}

/// [`read`] of a request already taken apart (the handler keeps borrowing its path).
pub async fn read_body(
    s: &SharedNode,
    mut body: Body,
    limit: usize,
) -> Result<(Bytes, Draw), ApiError> {
    // The declared length (Content-Length) as hyper framed the body: exact, and no header to
    // look up and parse again.
    let declared = body.size_hint().exact();
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    // Without a declared length the body may be anything up to the limit.
    let need = declared.unwrap_or(limit as u64);
    let draw = if need < SMALL {
        Draw::none()
    } else {
        s.budget.draw(need, WAIT).await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Busy,
                e.to_string(),
            )
        })?
    };
    // Into one buffer of the declared size: collecting frames and then joining them would hold
    // the body twice. Its own allocation, too: a slice of hyper's read buffer would keep the
    // whole buffer alive for as long as the value is held (see FIELD-NOTES).
    let mut buf = bytes::BytesMut::with_capacity(need.min(limit as u64) as usize);
    // `is_end_stream` saves the poll that would only find the end of a body already read whole.
    while !body.is_end_stream() {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| {
            // A body that stalls (idle timeout) or breaks.
            ApiError::bad_request(ErrorCode::BadBody, format!("reading the request body: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok((buf.freeze(), draw))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ValueTooLarge,
        format!("request body exceeds the {limit}-byte limit of this route"),
    )
}

/// Largest batch (and replica write) body: room for several values of the maximum size, at
/// least 16 MiB.
pub fn batch_body_limit(max_value_size: u64) -> usize {
    (max_value_size.saturating_mul(4).max(16 << 20)).min(usize::MAX as u64) as usize
}
