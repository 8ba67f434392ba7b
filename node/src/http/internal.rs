//! `/internal/v1/*`: what the operator and peer nodes call (internal bearer token required).

use super::error::ApiError;
use crate::cluster::node::SharedNode;
use crate::ring_state::{RingUpdate, RingUpdateError};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use ringcache_common::protocol::ErrorCode;

/// `PUT /internal/v1/ring`: 204 accepted or the same document again, 409 older epoch or a
/// different document of the current epoch, 400 invalid.
pub async fn put_ring(State(s): State<SharedNode>, req: Request) -> Result<StatusCode, ApiError> {
    let (body, _draw) = super::body::read(&s, req, crate::cluster::peers::MAX_RING_BYTES).await?;
    match crate::cluster::install_ring(&s, &body, "push") {
        Ok(RingUpdate::Accepted | RingUpdate::SameEpoch) => Ok(StatusCode::NO_CONTENT),
        Err(e @ RingUpdateError::OlderEpoch { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::OlderEpoch,
            e.to_string(),
        )),
        Err(e @ RingUpdateError::SameEpochConflict { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::EpochConflict,
            e.to_string(),
        )),
        Err(e) => Err(ApiError::bad_request(ErrorCode::InvalidRing, e.to_string())),
    }
}

/// `POST /internal/v1/get`: a batch of forwarded reads (see `wire::KEYS_CONTENT_TYPE`). Each key
/// is answered from this node's store: found, not found (this node serves the partition), or
/// not served (it holds nothing for a partition it does not serve: the sender's ring and ours
/// disagree, and the sender should ask another owner).
pub async fn get_many(
    State(s): State<SharedNode>,
    req: Request,
) -> Result<axum::response::Response, ApiError> {
    use crate::wire;
    use axum::response::IntoResponse;
    use bytes::BufMut;
    let (body, _draw) = super::body::read(&s, req, wire::MAX_KEYS_BODY).await?;
    let keys = wire::decode_keys(&body)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadKeys, e.to_string()))?;
    let view = s.ring.get();
    if s.expects_ring && view.epoch() == 0 {
        return Err(ApiError::unavailable(
            "no ring loaded yet (waiting for the ring file or a ring push)",
        ));
    }
    let now = s.clock.now_ms();
    let mut out = bytes::BytesMut::with_capacity(4 + keys.len() * 128);
    out.put_u32_le(keys.len() as u32);
    let completeness = s.ring.completeness();
    for k in keys {
        // Answered only from a partition held completely: a restarted or recovering node must
        // not answer "not found" (or an old value) for a key it simply has not copied yet.
        if completeness.is_complete(s.engine.partition_of(k)) {
            wire::put_result(&mut out, s.engine.get(k, now).as_deref(), true);
        } else {
            wire::put_result(&mut out, None, false);
        }
    }
    Ok((
        [(axum::http::header::CONTENT_TYPE, wire::RESULTS_CONTENT_TYPE)],
        out.freeze(),
    )
        .into_response())
}

/// `GET /internal/v1/migration`: progress of the pulls this node needs for the current epoch.
pub async fn migration(
    State(s): State<SharedNode>,
) -> axum::Json<crate::cluster::migration::MigrationStatus> {
    axum::Json(crate::cluster::migration::status(&s))
}

/// Bytes of records in one chunk of a partition stream (at least one record).
const CHUNK_BYTES: usize = 1 << 20;

/// `GET /internal/v1/partitions/{p}[?after=HEXKEY]`: the partition's entries (tombstones
/// included) as a record stream, read in bounded batches so memory stays flat.
pub async fn partition(
    State(s): State<SharedNode>,
    axum::extract::Path(p): axum::extract::Path<u32>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if p >= s.engine.partitions() {
        return Err(ApiError::not_found(format!("partition {p} does not exist")));
    }
    if !s.ring.completeness().is_complete(p) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Incomplete,
            format!(
                "partition {p} is not complete on this node (restarted, recovering or not an owner at epoch {}); pull it from another owner",
                s.ring.epoch()
            ),
        ));
    }
    let after = match q
        .as_deref()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("after=")))
    {
        Some(h) => Some(
            crate::cluster::peer::unhex(h)
                .ok_or_else(|| ApiError::bad_request(ErrorCode::BadCursor, "after must be hex"))?,
        ),
        None => None,
    };
    struct Scan {
        s: SharedNode,
        cursor: Option<Vec<u8>>,
        count: u64,
        finished: bool,
    }
    let init = Scan {
        s,
        cursor: after,
        count: 0,
        finished: false,
    };
    let stream = futures_util::stream::unfold(init, move |mut st| async move {
        if st.finished {
            return None;
        }
        let now = st.s.clock.now_ms();
        let batch =
            st.s.engine
                .scan_partition(
                    p,
                    st.cursor.as_deref(),
                    crate::cluster::migration::SCAN_BATCH,
                    now,
                )
                .unwrap_or_default();
        // A chunk holds up to SCAN_BATCH entries or CHUNK_BYTES (at least one entry), so that
        // large values never make one chunk large.
        let mut out = bytes::BytesMut::new();
        let mut sent = 0usize;
        for r in &batch {
            crate::wire::encode_record(&mut out, r);
            sent += 1;
            if out.len() >= CHUNK_BYTES {
                break;
            }
        }
        st.count += sent as u64;
        if sent == batch.len() && batch.len() < crate::cluster::migration::SCAN_BATCH {
            crate::wire::encode_trailer(&mut out, st.count);
            st.finished = true;
        }
        st.cursor = batch[..sent].last().map(|r| r.key.to_vec()).or(st.cursor);
        Some((Ok::<_, std::convert::Infallible>(out.freeze()), st))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, crate::wire::CONTENT_TYPE)],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// `POST /internal/v1/apply`: replica writes as a record stream, applied newer-wins.
/// A truncated or malformed stream is refused whole (400) and nothing is applied.
pub async fn apply(State(s): State<SharedNode>, req: Request) -> Result<StatusCode, ApiError> {
    let limit = super::body::batch_body_limit(s.max_record_value());
    let (body, _draw) = super::body::read(&s, req, limit).await?;
    let bound = |b: u64| usize::try_from(b).unwrap_or(usize::MAX);
    let records =
        crate::wire::decode_bounded(&body, bound(s.max_value_size), bound(s.max_collection_size))
            .map_err(|e| match e {
            crate::wire::WireError::ValueTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::ValueTooLarge,
                e.to_string(),
            ),
            e => ApiError::bad_request(ErrorCode::BadStream, e.to_string()),
        })?;
    let now = s.clock.now_ms();
    // Refuse the whole stream before applying any of it when one record is from the future.
    let limit = now.saturating_add(crate::engine::MAX_FUTURE_MS);
    if let Some(r) = records
        .iter()
        .find(|r| crate::engine::hlc::physical_ms(r.version) > limit)
    {
        return Err(crate::engine::EngineError::FutureVersion {
            ahead_ms: crate::engine::hlc::physical_ms(r.version) - now,
        }
        .into());
    }
    for r in &records {
        s.engine.apply(r, now)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /internal/v1/op`: a client's read-modify-write forwarded by the node it reached
/// (JSON [`crate::cluster::ops::OpRequest`]); answers the JSON [`crate::cluster::Outcome`].
pub async fn op(
    State(s): State<SharedNode>,
    req: Request,
) -> Result<axum::Json<crate::cluster::Outcome>, ApiError> {
    // A typed command carries many elements, each bounded by the value size: the batch bound.
    let limit = super::body::batch_body_limit(s.max_value_size);
    let (body, _draw) = super::body::read(&s, req, limit).await?;
    let r: crate::cluster::ops::OpRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadBody, format!("invalid op: {e}")))?;
    super::keys::check_key_bytes(&r.key)?;
    if let crate::cluster::KeyOp::Set { value, .. } | crate::cluster::KeyOp::Append { value } =
        &r.op
        && value.len() as u64 > s.max_value_size
    {
        return Err(super::keys::value_too_large(value.len(), s.max_value_size));
    }
    let origin = crate::cluster::Origin { forwarded: true };
    Ok(axum::Json(
        crate::cluster::op(&s, &r.key, r.op, &origin).await?,
    ))
}

/// `POST /internal/v1/abort`: fault injection. The process dies at once, as from SIGKILL, an
/// OOM kill or a crash (no drain, no snapshot), shortly after answering 202; the container is
/// then restarted in place. The end-to-end suite uses it to prove that such restarts lose
/// nothing. It gives nothing the internal token does not already give (a ring push can do
/// worse).
pub async fn abort() -> StatusCode {
    tracing::error!("aborting on request (POST /internal/v1/abort)");
    tokio::spawn(async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        std::process::abort();
    });
    StatusCode::ACCEPTED
}

/// `POST /internal/v1/keyspace`: the keys of some partitions this node serves completely,
/// listed, counted or deleted (JSON [`crate::cluster::keyspace::Query`]); answers the JSON
/// [`crate::cluster::keyspace::Answer`], naming the partitions it does not serve.
pub async fn keyspace(
    State(s): State<SharedNode>,
    req: Request,
) -> Result<axum::Json<crate::cluster::keyspace::Answer>, ApiError> {
    // A query names at most every partition and a pattern.
    let (body, _draw) = super::body::read(&s, req, 1 << 20).await?;
    let q: crate::cluster::keyspace::Query = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(ErrorCode::BadBody, format!("invalid keyspace query: {e}"))
    })?;
    Ok(axum::Json(crate::cluster::keyspace::local(&s, &q).await?))
}
