//! Bearer-token checks: the optional user token on `/v1/*`, the internal token on `/internal/v1/*`.

use super::error::ApiError;
use crate::cluster::node::SharedNode;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ringcache_common::protocol::{ErrorCode, INTERNAL_TOKEN_HEADER};

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The bearer token, or the internal token header: the API server's pod proxy (the operator's
/// `--node-access=proxy`) strips `Authorization` before it reaches the pod.
fn internal_token(req: &Request) -> Option<&str> {
    bearer(req).or_else(|| {
        req.headers()
            .get(INTERNAL_TOKEN_HEADER)?
            .to_str()
            .ok()
            .map(str::trim)
    })
}

/// Compares in time independent of where the first difference is.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "missing or wrong bearer token",
    )
    .into_response()
}

/// `/v1/*` with `--auth-token-file`: the client token, or the internal token (a peer forwarding
/// a request it already authenticated: the client's own token never leaves the node it reached).
pub async fn public(State(s): State<SharedNode>, req: Request, next: Next) -> Response {
    if let Some(denied) = public_denied(&s, &req) {
        return denied;
    }
    next.run(req).await
}

/// The answer to a `/v1/*` request without a valid token (None: it may go on).
pub fn public_denied(s: &SharedNode, req: &Request) -> Option<Response> {
    let token = s.auth_token.as_deref()?;
    let client = bearer(req).is_some_and(|b| same(b, token));
    let peer = s
        .internal_token
        .as_deref()
        .is_some_and(|t| internal_token(req).is_some_and(|b| same(b, t)));
    (!client && !peer).then(unauthorized)
}

pub async fn internal(State(s): State<SharedNode>, req: Request, next: Next) -> Response {
    let Some(token) = s.internal_token.as_deref() else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "internal API disabled: no internal token configured",
        )
        .into_response();
    };
    if !internal_token(&req).is_some_and(|b| same(b, token)) {
        return unauthorized();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_compare_is_equality() {
        assert!(super::same("abc", "abc"));
        assert!(!super::same("abc", "abd"));
        assert!(!super::same("abc", "ab"));
    }
}
