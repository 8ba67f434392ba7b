//! `GET/PUT/DELETE /v1/keys/{key}`.

use super::error::ApiError;
use crate::cluster::node::SharedNode;
use crate::cluster::{self, Origin};
use crate::quantity::parse_duration_ms;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ringcache_common::protocol::{ErrorCode, FORWARDED_HEADER as FORWARDED};
use ringcache_ring::MAX_KEY_LEN;

/// Longest accepted TTL (10 years): larger values are almost certainly unit mistakes.
const MAX_TTL_MS: u64 = 10 * 365 * 86_400_000;

pub fn check_key(key: &str) -> Result<&[u8], ApiError> {
    check_key_bytes(key.as_bytes())
}

/// A key's bounds: not empty, at most [`MAX_KEY_LEN`] bytes.
pub fn check_key_bytes(b: &[u8]) -> Result<&[u8], ApiError> {
    if b.is_empty() {
        return Err(ApiError::bad_key("key must not be empty"));
    }
    if b.len() > MAX_KEY_LEN {
        return Err(ApiError::bad_key(format!(
            "key is {} bytes, the maximum is {MAX_KEY_LEN}",
            b.len()
        )));
    }
    Ok(b)
}

/// Parses a TTL such as `30s`, `500ms`, `1m`; zero and absurdly long TTLs are refused.
pub fn check_ttl(raw: &str) -> Result<u64, ApiError> {
    let ms = parse_duration_ms(raw)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadTtl, e.to_string()))?;
    if ms == 0 || ms > MAX_TTL_MS {
        return Err(ApiError::bad_request(
            ErrorCode::BadTtl,
            format!("ttl {raw:?} must be between 1ms and 10 years"),
        ));
    }
    Ok(ms)
}

fn ttl_from_query(q: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(q) = q else { return Ok(None) };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("ttl=") {
            return check_ttl(v).map(Some);
        }
    }
    Ok(None)
}

/// The `{key}` of a key route, percent-decoded. A key that does not decode to UTF-8 (or a path
/// axum cannot split) gets the API's JSON 400 `bad_key`, like every other bad key, instead of
/// axum's plain-text rejection.
pub struct Key(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Key {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Key, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(key)) => Ok(Key(key)),
            Err(e) => Err(ApiError::bad_key(format!(
                "the key in the path is not valid: {}",
                e.body_text()
            ))),
        }
    }
}

/// Loop guard of the incoming request.
pub fn origin_of(h: &HeaderMap) -> Origin {
    Origin {
        forwarded: h.contains_key(FORWARDED),
    }
}

// Takes the request itself (moved, not copied) instead of a `HeaderMap` extractor, which would
// clone every header on the hottest route.
pub async fn get(
    State(s): State<SharedNode>,
    Key(key): Key,
    req: axum::extract::Request,
) -> Response {
    let k = match check_key(&key) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    // Fast path: a partition this node serves is answered without looking at the headers.
    let p = s.engine.partition_of(k);
    let res = if s.ring.serves_read_locally(p) {
        Ok(s.engine.get(k, s.clock.now_ms()))
    } else {
        cluster::read(&s, k, req.headers().contains_key(FORWARDED)).await
    };
    match res {
        Ok(Some(v)) => ([(header::CONTENT_TYPE, "application/octet-stream")], v).into_response(),
        Ok(None) => ApiError::not_found("key not found").into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn put(
    State(s): State<SharedNode>,
    Key(key): Key,
    RawQuery(q): RawQuery,
    req: axum::extract::Request,
) -> Result<StatusCode, ApiError> {
    let k = check_key(&key)?;
    let ttl = ttl_from_query(q.as_deref())?;
    let origin = origin_of(req.headers());
    let limit = usize::try_from(s.max_value_size).unwrap_or(usize::MAX);
    let (body, _draw) = super::body::read(&s, req, limit).await?;
    if body.len() as u64 > s.max_value_size {
        return Err(value_too_large(body.len(), s.max_value_size));
    }
    // The engine copies the value into its own allocation (the request buffer is not retained).
    let w = cluster::Write {
        value: Some(body),
        ttl_ms: ttl,
    };
    cluster::write(&s, k, w, &origin).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn value_too_large(len: usize, max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ValueTooLarge,
        format!("value is {len} bytes, the maximum is {max}"),
    )
}

pub async fn delete(
    State(s): State<SharedNode>,
    Key(key): Key,
    h: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let k = check_key(&key)?;
    let w = cluster::Write {
        value: None,
        ttl_ms: None,
    };
    cluster::write(&s, k, w, &origin_of(&h)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `/v1/keys/` with nothing after it: an empty key.
pub async fn empty_key() -> ApiError {
    ApiError::bad_key("key must not be empty")
}
