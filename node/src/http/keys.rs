//! `GET/PUT/DELETE /v1/keys/{key}`.

use super::error::ApiError;
use super::names::{self, FORWARDED};
use crate::cluster::node::SharedNode;
use crate::cluster::{self, Origin};
use crate::metrics::KEY_PREFIX;
use crate::quantity::parse_duration_ms;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ringcache_common::protocol::ErrorCode;
use ringcache_ring::MAX_KEY_LEN;
use std::borrow::Cow;

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

/// The `{key}` of a key route, percent-decoded, borrowed from the path when it has nothing to
/// decode (the usual case: no allocation). Decoded like axum's `Path` (a `%` not followed by
/// two hex digits stays as it is); a key that does not decode to UTF-8 gets the API's JSON 400
/// `bad_key`, like every other bad key.
pub fn key_of(uri: &Uri) -> Result<Cow<'_, str>, ApiError> {
    let raw = uri.path().strip_prefix(KEY_PREFIX).unwrap_or_default();
    if !raw.as_bytes().contains(&b'%') {
        return Ok(Cow::Borrowed(raw));
    }
    String::from_utf8(percent_decode(raw.as_bytes()))
        .map(Cow::Owned)
        .map_err(|_| {
            ApiError::bad_key(format!(
                "the key in the path is not valid: {raw:?} does not decode to UTF-8"
            ))
        })
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let decoded = match s.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

/// Loop guard of the incoming request.
pub fn origin_of(h: &HeaderMap) -> Origin {
    Origin {
        forwarded: names::has(h, &FORWARDED),
    }
}

// Takes the request itself (moved, not copied) instead of a `HeaderMap` extractor, which would
// clone every header on the hottest route, and reads the key from its path (no `Path`
// extraction, no copy of the key).
pub async fn get(State(s): State<SharedNode>, req: axum::extract::Request) -> Response {
    let key = match key_of(req.uri()) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let k = match check_key(&key) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    // Fast path: a partition this node serves is answered without looking at the headers.
    let p = s.engine.partition_of(k);
    let res = if s.ring.serves_read_locally(p) {
        Ok(s.engine.get(k, s.clock.now_ms()))
    } else {
        // Boxed: inline, the forwarding future would make every GET's future (boxed and moved
        // per request) several times larger.
        Box::pin(cluster::read(&s, k, names::has(req.headers(), &FORWARDED))).await
    };
    match res {
        // `Bytes` answers `application/octet-stream` already.
        Ok(Some(v)) => v.into_response(),
        Ok(None) => ApiError::not_found("key not found").into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn put(
    State(s): State<SharedNode>,
    req: axum::extract::Request,
) -> Result<StatusCode, ApiError> {
    let (parts, body) = req.into_parts();
    let key = key_of(&parts.uri)?;
    let k = check_key(&key)?;
    let ttl = ttl_from_query(parts.uri.query())?;
    let origin = origin_of(&parts.headers);
    let limit = usize::try_from(s.max_value_size).unwrap_or(usize::MAX);
    let (body, _draw) = super::body::read_body(&s, body, limit).await?;
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
    req: axum::extract::Request,
) -> Result<StatusCode, ApiError> {
    let key = key_of(req.uri())?;
    let k = check_key(&key)?;
    let h = req.headers();
    let w = cluster::Write {
        value: None,
        ttl_ms: None,
    };
    cluster::write(&s, k, w, &origin_of(h)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `/v1/keys/` with nothing after it: an empty key.
pub async fn empty_key() -> ApiError {
    ApiError::bad_key("key must not be empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> Result<String, ApiError> {
        let uri: Uri = path.parse().unwrap();
        key_of(&uri).map(|k| k.into_owned())
    }

    #[test]
    fn keys_are_percent_decoded_like_axum_path() {
        assert!(matches!(
            key_of(&"/v1/keys/plain:1?ttl=1s".parse().unwrap()),
            Ok(Cow::Borrowed("plain:1"))
        ));
        assert_eq!(key("/v1/keys/user%3A1").unwrap(), "user:1");
        assert_eq!(key("/v1/keys/a%2fb%2F").unwrap(), "a/b/");
        assert_eq!(key("/v1/keys/%C3%A9").unwrap(), "é");
        // A `%` without two hex digits after it stays as it is.
        assert_eq!(key("/v1/keys/100%").unwrap(), "100%");
        assert_eq!(key("/v1/keys/%zz%4").unwrap(), "%zz%4");
        assert_eq!(key("/v1/keys/%2").unwrap(), "%2");
        assert!(key("/v1/keys/%FF").is_err(), "not UTF-8");
    }
}
